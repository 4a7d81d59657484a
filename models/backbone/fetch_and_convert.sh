#!/usr/bin/env bash
# SCAFFOLD: replaced by the engine issue.
echo "fetch_and_convert: not built yet" >&2
