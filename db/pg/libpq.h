/*
 * libpq, loaded when a PostgreSQL target is first opened, not when a program starts.
 *
 * Why: libpq and what it links (OpenSSL, Kerberos, LDAP, SASL: about twenty libraries)
 * cost every process about 8 ms of start-up on the machines we measure, and a search of
 * a SQLite index must not pay for a backend it does not use (issue 14: a whole
 * `capsearch "dog beach"` process within 5 ms). So no binary links libpq; this table is
 * filled from Debian's libpq5 (soname libpq.so.5) by dlopen on first use.
 *
 * Invariants:
 *  - the db/pg sources call libpq by its own names (PQexec, PQclear...): the macros
 *    below route each through capdb__libpq, so the code reads like any libpq client and
 *    the types come from libpq's own header, checked by the compiler;
 *  - capdb__libpq_load succeeds before any of them is called (capdb_pg_open calls it
 *    first); it is thread-safe, runs dlopen at most once, and keeps the library loaded
 *    for the life of the process.
 */
#ifndef CAPDB_PG_LIBPQ_H
#define CAPDB_PG_LIBPQ_H

#include <stddef.h>

#include <libpq-fe.h>

/* Every libpq function capsearch calls (add a name here and below to use another). */
#define CAPDB_LIBPQ_FUNCTIONS(X)                                                                   \
    X(PQclear) X(PQcmdTuples) X(PQconnectdb) X(PQdb) X(PQerrorMessage) X(PQexec)               \
        X(PQexecParams) X(PQfformat) X(PQfinish) X(PQfreemem) X(PQgetisnull) X(PQgetlength)    \
            X(PQgetvalue) X(PQhost) X(PQntuples) X(PQresultErrorField)                         \
                X(PQresultErrorMessage) X(PQresultStatus) X(PQsetNoticeProcessor) X(PQstatus)  \
                    X(PQunescapeBytea)

struct capdb_libpq {
#define CAPDB_LIBPQ_POINTER(name) __typeof__(name) *name;
    CAPDB_LIBPQ_FUNCTIONS(CAPDB_LIBPQ_POINTER)
#undef CAPDB_LIBPQ_POINTER
};
extern struct capdb_libpq capdb__libpq;

/* Loads libpq.so.5 and resolves every function above. 0, or -ENOSYS with why (the
 * library is missing or lacks a function) written to why. */
int capdb__libpq_load(char *why, size_t size);

/* libpq.c, which fills the table, sees the real names. */
#ifndef CAPDB_LIBPQ_LOADER
#define PQclear (capdb__libpq.PQclear)
#define PQcmdTuples (capdb__libpq.PQcmdTuples)
#define PQconnectdb (capdb__libpq.PQconnectdb)
#define PQdb (capdb__libpq.PQdb)
#define PQerrorMessage (capdb__libpq.PQerrorMessage)
#define PQexec (capdb__libpq.PQexec)
#define PQexecParams (capdb__libpq.PQexecParams)
#define PQfformat (capdb__libpq.PQfformat)
#define PQfinish (capdb__libpq.PQfinish)
#define PQfreemem (capdb__libpq.PQfreemem)
#define PQgetisnull (capdb__libpq.PQgetisnull)
#define PQgetlength (capdb__libpq.PQgetlength)
#define PQgetvalue (capdb__libpq.PQgetvalue)
#define PQhost (capdb__libpq.PQhost)
#define PQntuples (capdb__libpq.PQntuples)
#define PQresultErrorField (capdb__libpq.PQresultErrorField)
#define PQresultErrorMessage (capdb__libpq.PQresultErrorMessage)
#define PQresultStatus (capdb__libpq.PQresultStatus)
#define PQsetNoticeProcessor (capdb__libpq.PQsetNoticeProcessor)
#define PQstatus (capdb__libpq.PQstatus)
#define PQunescapeBytea (capdb__libpq.PQunescapeBytea)
#endif

#endif
