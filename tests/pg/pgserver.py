"""A throw-away PostgreSQL server for Python tests (stdlib only), around tests/pg/pgtmp.sh.

    sys.path.insert(0, os.path.join(SOURCE_DIR, "tests", "pg"))
    from pgserver import PgServer

    with PgServer() as pg:               # started; stopped and removed at the end
        uri = pg.uri()                   # postgresql:///capsearch?host=...&user=capsearch
        other = pg.create_db("node2")    # another database on the same server
        pg.psql("select count(*) from images")
        pg.restart()                     # the server restarted under running clients
        pg.stop("immediate")             # ... or crashed (start() brings it back)

The server listens on a Unix socket in pg.dir only (no TCP port). As root it runs as an
unprivileged user (see pgtmp.sh); the clients, psql included, stay the calling user.
"""

import os
import shutil
import subprocess
import tempfile

HERE = os.path.dirname(os.path.abspath(__file__))
PGTMP = os.path.join(HERE, "pgtmp.sh")


def _bindir():
    try:
        out = subprocess.run(["pg_config", "--bindir"], capture_output=True, text=True, check=True)
        d = out.stdout.strip()
        if os.access(os.path.join(d, "psql"), os.X_OK):
            return d
    except (OSError, subprocess.CalledProcessError):
        pass
    return "/usr/lib/postgresql/15/bin"


class PgServer:
    """One server in its own folder. dir=None makes a fresh /tmp/capsearch-pg.XXXXXX and
    removes it on stop(); a given folder (it must exist and be empty) is left in place."""

    def __init__(self, dir=None):
        self._own_dir = dir is None
        # /tmp, not $TMPDIR: the socket path must stay short (sun_path is 108 bytes).
        self.dir = tempfile.mkdtemp(prefix="capsearch-pg.", dir="/tmp") if dir is None else dir
        self._bin = _bindir()
        self._running = False
        self._reaper = None

    def __enter__(self):
        self.start()
        return self

    def __exit__(self, *exc):
        self.close()
        return False

    def _pgtmp(self, *args):
        r = subprocess.run([PGTMP, *args], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"pgtmp.sh {' '.join(args)}: {r.stderr.strip()}")
        return r.stdout.strip()

    def start(self):
        """Makes the server on the first call, starts it again after stop()."""
        if self._running:
            return
        if os.path.exists(os.path.join(self.dir, "data")):
            self._pgtmp("restart", self.dir)  # stop (none running) + start
        else:
            self._pgtmp("start", self.dir)
            if self._own_dir and self._reaper is None:
                # Stops the server and removes the folder if this process dies without
                # close() (a ctest timeout's SIGKILL). Its own session: not killed with us.
                self._reaper = subprocess.Popen(
                    [PGTMP, "reap", self.dir, str(os.getpid())],
                    stdin=subprocess.DEVNULL, stdout=subprocess.DEVNULL,
                    stderr=subprocess.DEVNULL, start_new_session=True)
        self._running = True

    def stop(self, mode="fast"):
        """Stops the server (mode "immediate": as if it crashed); the data stay."""
        self._pgtmp("stop", self.dir, mode)
        self._running = False

    def restart(self):
        """pg_ctl stop -m fast, then start: every client connection is cut."""
        self._pgtmp("restart", self.dir)
        self._running = True

    def close(self):
        """Stops the server and removes the folder when this object made it."""
        try:
            self.stop()
        finally:
            if self._own_dir:
                shutil.rmtree(self.dir, ignore_errors=True)
            # The reaper ends by itself once this process exits; once the folder is gone
            # it has nothing to do, so end it now and reap it.
            if self._reaper is not None:
                self._reaper.kill()
                self._reaper.wait()
                self._reaper = None

    def uri(self, dbname="capsearch"):
        return self._pgtmp("uri", self.dir, dbname)

    def create_db(self, name):
        """Creates database name on this server and returns its URI."""
        r = subprocess.run([os.path.join(self._bin, "createdb"), "-h", self.dir, "-p", "5432",
                            "-U", "capsearch", name], capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"createdb {name}: {r.stderr.strip()}")
        return self.uri(name)

    def psql(self, sql, dbname="capsearch"):
        """Runs sql with psql (unaligned, tuples only, stops at the first error) and
        returns its stdout; raises RuntimeError with psql's message on an error."""
        r = subprocess.run([os.path.join(self._bin, "psql"), "-X", "-q", "-A", "-t",
                            "-v", "ON_ERROR_STOP=1", "-d", self.uri(dbname), "-c", sql],
                           capture_output=True, text=True)
        if r.returncode != 0:
            raise RuntimeError(f"psql: {r.stderr.strip()}")
        return r.stdout

    @property
    def log(self):
        """Path of the server's log (for a failing test's message)."""
        return os.path.join(self.dir, "server.log")
