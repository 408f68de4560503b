/*
 * accounts.c - doctor and admin accounts, sign-in sessions and appointment
 * tokens in SQLite (data_dir/accounts.db), and scrypt password hashing.
 *
 * Thread: whichever thread owns the handle (the signalling thread in the
 * server, the main thread of `tabib user`). A handle is never shared between
 * threads (the connection is opened SQLITE_OPEN_NOMUTEX); two processes may
 * share the file: WAL lets a reader go on while the other writes, and the
 * busy timeout makes a writer wait up to 5 s for the other's transaction.
 *
 * Durability reasoning, as in audit/writer.c: WAL with synchronous=FULL, so a
 * committed change survives a power cut. That matters most for the changes
 * that take something away: a disabled account, ended sessions, a redeemed
 * appointment must not come back after a crash.
 *
 * Secrets: a password is kept only as its scrypt hash. A token is 256 random
 * bits and is kept only as its SHA-256: a fast unsalted hash is enough for a
 * value nobody can guess, and it keeps lookup a plain index search, while a
 * copy of the database (a backup, a stolen disk) holds nothing that signs in.
 * Nothing in this file logs; error messages name fields, never their secret
 * values.
 *
 * Schema changes are forward migrations numbered by PRAGMA user_version. Each
 * runs in its own BEGIN IMMEDIATE transaction that first re-reads the version,
 * so two processes opening a new file at once do not both run a migration.
 */
#include "accounts.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <unistd.h>

#include <openssl/core_names.h>
#include <openssl/crypto.h>
#include <openssl/evp.h>
#include <openssl/kdf.h>
#include <openssl/params.h>
#include <openssl/rand.h>
#include <sqlite3.h>

#include "base.h"

/* The cost of new hashes: about 16 MiB and 50 ms per hash on a current server. */
#define SCRYPT_N          16384
#define SCRYPT_R          8
#define SCRYPT_P          1
#define SCRYPT_SALT_BYTES 16
#define SCRYPT_HASH_BYTES 32

/*
 * What a stored hash may ask for. Hash strings come from this file, but a
 * damaged or tampered database must not make a login allocate gigabytes or
 * spin for minutes, nor pass with a trivially cheap hash: N from 2^10 to 2^20,
 * memory (128 * r * (N + 2 + p) bytes, what OpenSSL allocates) at most
 * 256 MiB, work N * r * p at most 32 times ours.
 */
#define SCRYPT_N_MIN     1024u
#define SCRYPT_N_MAX     (1u << 20)
#define SCRYPT_R_MAX     32u
#define SCRYPT_P_MAX     16u
#define SCRYPT_MEM_MAX   (256ull << 20)
#define SCRYPT_WORK_MAX  (32ull * SCRYPT_N * SCRYPT_R * SCRYPT_P)
#define SCRYPT_SALT_MIN  8
#define SCRYPT_BYTES_MAX 64 /* longest salt or hash accepted */
/* No shorter than ours: scrypt's output of any length is a prefix of a longer one, so a
 * stored hash cut short (one character of base64 fewer) would still verify. */
#define SCRYPT_HASH_MIN SCRYPT_HASH_BYTES
#define HASH_PREFIX     "scrypt$"
#define STR_(x)         #x
#define STR(x)          STR_(x)

/*
 * Checked against when the user does not exist, so that an unknown name costs
 * the same scrypt as a known one. Same parameters as new hashes; the zero hash
 * matches no password (it would take a 256-bit preimage).
 */
#define DUMMY_SALT "AAAAAAAAAAAAAAAAAAAAAA"                      /* 16 zero bytes */
#define DUMMY_KEY  "AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA" /* 32 zero bytes */
#define DUMMY_HASH                                                                                 \
    HASH_PREFIX STR(SCRYPT_N) "$" STR(SCRYPT_R) "$" STR(SCRYPT_P) "$" DUMMY_SALT "$" DUMMY_KEY

#define FIRST_ADMIN_NAME      "admin"
#define FIRST_ADMIN_PASS_LEN  24 /* [A-Za-z0-9]: about 143 bits */
#define TOKEN_RAW_BYTES       32
#define TOKEN_HASH_BYTES      32
#define NAME_CHARS            "abcdefghijklmnopqrstuvwxyz0123456789._-"
#define CLINIC_CHARS          "abcdefghijklmnopqrstuvwxyz0123456789_-"
#define PASSWORD_ALPHANUMERIC "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789"

static const char b64_std[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
static const char b64_url[] = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_";

struct sig_accounts {
    sqlite3 *db;
};

/* Migration i brings the schema from version i to i + 1. */
static const char *const migrations[] = {
    /* 0 -> 1: accounts, their clinics, sessions and appointment tokens. */
    "CREATE TABLE users ("
    "  id INTEGER PRIMARY KEY,"
    "  username TEXT NOT NULL UNIQUE,"
    "  role TEXT NOT NULL CHECK (role IN ('doctor', 'admin')),"
    "  disabled INTEGER NOT NULL DEFAULT 0 CHECK (disabled IN (0, 1)),"
    "  all_clinics INTEGER NOT NULL DEFAULT 0 CHECK (all_clinics IN (0, 1)),"
    "  password_hash TEXT NOT NULL,"
    "  created_ms INTEGER NOT NULL"
    ");"
    "CREATE TABLE user_clinics ("
    "  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  clinic_id TEXT NOT NULL,"
    "  PRIMARY KEY (user_id, clinic_id)"
    ") WITHOUT ROWID;"
    "CREATE TABLE sessions ("
    "  token_hash BLOB PRIMARY KEY CHECK (length(token_hash) = 32),"
    "  user_id INTEGER NOT NULL REFERENCES users (id) ON DELETE CASCADE,"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL"
    ") WITHOUT ROWID;"
    "CREATE INDEX sessions_by_user ON sessions (user_id);"
    "CREATE INDEX sessions_by_expiry ON sessions (expires_ms);"
    "CREATE TABLE appointments ("
    "  token_hash BLOB PRIMARY KEY CHECK (length(token_hash) = 32),"
    "  clinic TEXT NOT NULL,"
    "  patient_ref TEXT NOT NULL DEFAULT '',"
    "  priority INTEGER NOT NULL DEFAULT 0 CHECK (priority IN (0, 1)),"
    "  issued_by INTEGER NOT NULL REFERENCES users (id),"
    "  created_ms INTEGER NOT NULL,"
    "  expires_ms INTEGER NOT NULL,"
    "  redeemed_ms INTEGER"
    ") WITHOUT ROWID;",
};

#define MIGRATION_COUNT ((int)(sizeof(migrations) / sizeof(migrations[0])))

/* ------------------------------------------------------------------------- */
/* Names                                                                      */
/* ------------------------------------------------------------------------- */

/* True when `s` is min..SIG_ID_MAX-1 bytes, each one of `chars`. */
static bool made_of(const char *s, const char *chars, size_t min)
{
    if (!s)
        return false;
    size_t len = strnlen(s, SIG_ID_MAX);
    return len >= min && len < SIG_ID_MAX && strspn(s, chars) == len;
}

bool sig_username_valid(const char *name)
{
    static_assert(SIG_USERNAME_MAX == SIG_ID_MAX, "one length limit for names and ids");
    /* A name starting with '-' or '.' reads like an option or a path: refuse it. */
    return made_of(name, NAME_CHARS, 1) && name[0] != '-' && name[0] != '.';
}

bool sig_clinic_id_valid(const char *id)
{
    return made_of(id, CLINIC_CHARS, 1);
}

const char *sig_role_name(enum sig_role role)
{
    switch (role) {
    case SIG_ROLE_PATIENT:
        return "patient";
    case SIG_ROLE_DOCTOR:
        return "doctor";
    case SIG_ROLE_ADMIN:
        return "admin";
    case SIG_ROLE_NONE:
        break;
    }
    return "none";
}

/* The role stored in the users table; SIG_ROLE_NONE for anything else. */
static enum sig_role role_from_text(const char *text)
{
    if (text && strcmp(text, "doctor") == 0)
        return SIG_ROLE_DOCTOR;
    if (text && strcmp(text, "admin") == 0)
        return SIG_ROLE_ADMIN;
    return SIG_ROLE_NONE;
}

bool sig_user_has_clinic(const struct sig_user *user, const char *clinic_id)
{
    assert(user);
    /* A disabled account acts on nothing; "every clinic" is an admin's right only. */
    if (user->disabled || !sig_clinic_id_valid(clinic_id))
        return false;
    if (user->role == SIG_ROLE_ADMIN && user->all_clinics)
        return true;
    if (user->role != SIG_ROLE_ADMIN && user->role != SIG_ROLE_DOCTOR)
        return false;
    for (unsigned i = 0; i < user->clinic_count && i < SIG_USER_CLINIC_MAX; i++)
        if (strcmp(user->clinics[i], clinic_id) == 0)
            return true;
    return false;
}

/* ------------------------------------------------------------------------- */
/* Base64 (no padding) and tokens                                             */
/* ------------------------------------------------------------------------- */

/* Writes n bytes as unpadded base64 in `alphabet` to out (>= (4n + 2) / 3 + 1 bytes). */
static void b64_encode(const char *alphabet, const unsigned char *in, size_t n, char *out)
{
    size_t o = 0, i = 0;
    for (; i + 3 <= n; i += 3) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8 | in[i + 2];
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
        out[o++] = alphabet[v & 63];
    }
    if (n - i == 1) {
        uint32_t v = (uint32_t)in[i] << 16;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
    } else if (n - i == 2) {
        uint32_t v = (uint32_t)in[i] << 16 | (uint32_t)in[i + 1] << 8;
        out[o++] = alphabet[v >> 18 & 63];
        out[o++] = alphabet[v >> 12 & 63];
        out[o++] = alphabet[v >> 6 & 63];
    }
    out[o] = '\0';
}

/*
 * Decodes exactly `len` characters of unpadded base64 into out (cap bytes).
 * Only the canonical form is accepted (unused low bits zero), so one value
 * has one spelling. Returns the byte count, or -1.
 */
static long b64_decode(const char *alphabet, const char *in, size_t len, unsigned char *out,
                       size_t cap)
{
    if (len % 4 == 1 || len / 4 * 3 + (len % 4 ? len % 4 - 1 : 0) > cap)
        return -1;
    uint32_t acc = 0;
    unsigned bits = 0;
    size_t o = 0;
    for (size_t i = 0; i < len; i++) {
        const char *p = in[i] ? memchr(alphabet, in[i], 64) : NULL;
        if (!p)
            return -1;
        acc = acc << 6 | (uint32_t)(p - alphabet);
        bits += 6;
        if (bits >= 8) {
            bits -= 8;
            out[o++] = (unsigned char)(acc >> bits);
            acc &= (1u << bits) - 1;
        }
    }
    return acc == 0 ? (long)o : -1;
}

int sig_random_token(char *out)
{
    static_assert((4 * TOKEN_RAW_BYTES + 2) / 3 == SIG_TOKEN_CHARS, "token length");
    assert(out);
    unsigned char raw[TOKEN_RAW_BYTES];
    if (RAND_bytes(raw, sizeof(raw)) != 1) {
        out[0] = '\0';
        return -EIO;
    }
    b64_encode(b64_url, raw, sizeof(raw), out);
    OPENSSL_cleanse(raw, sizeof(raw));
    return 0;
}

/* True when `token` could be one of ours: SIG_TOKEN_CHARS of base64url. */
static bool token_well_formed(const char *token)
{
    return token && strnlen(token, SIG_TOKEN_CHARS + 1) == SIG_TOKEN_CHARS &&
           strspn(token, b64_url) == SIG_TOKEN_CHARS;
}

/* The SHA-256 of a token's text, the only form in which it is stored. 0 or -EIO. */
static int token_hash(const char *token, unsigned char md[TOKEN_HASH_BYTES])
{
    unsigned int len = 0;
    if (EVP_Digest(token, SIG_TOKEN_CHARS, md, &len, EVP_sha256(), NULL) != 1 ||
        len != TOKEN_HASH_BYTES)
        return -EIO;
    return 0;
}

/* ------------------------------------------------------------------------- */
/* Password hashing                                                           */
/* ------------------------------------------------------------------------- */

struct scrypt_hash {
    uint64_t n;
    uint32_t r, p;
    size_t salt_len, hash_len;
    unsigned char salt[SCRYPT_BYTES_MAX];
    unsigned char hash[SCRYPT_BYTES_MAX];
};

/* Runs scrypt; out gets outlen bytes. 0 or -EIO (also when OpenSSL refuses the parameters). */
static int scrypt_derive(const char *password, size_t pwlen, const unsigned char *salt,
                         size_t salt_len, uint64_t n, uint32_t r, uint32_t p, unsigned char *out,
                         size_t outlen)
{
    int rc = -EIO;
    uint64_t maxmem = SCRYPT_MEM_MAX;
    EVP_KDF *kdf = EVP_KDF_fetch(NULL, "SCRYPT", NULL);
    EVP_KDF_CTX *ctx = kdf ? EVP_KDF_CTX_new(kdf) : NULL;
    if (ctx) {
        OSSL_PARAM params[] = {
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_PASSWORD, (void *)password, pwlen),
            OSSL_PARAM_construct_octet_string(OSSL_KDF_PARAM_SALT, (void *)salt, salt_len),
            OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_N, &n),
            OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_R, &r),
            OSSL_PARAM_construct_uint32(OSSL_KDF_PARAM_SCRYPT_P, &p),
            OSSL_PARAM_construct_uint64(OSSL_KDF_PARAM_SCRYPT_MAXMEM, &maxmem),
            OSSL_PARAM_construct_end(),
        };
        if (EVP_KDF_derive(ctx, out, outlen, params) == 1)
            rc = 0;
    }
    EVP_KDF_CTX_free(ctx);
    EVP_KDF_free(kdf);
    return rc;
}

int sig_password_hash(const char *password, char *out, size_t outlen)
{
    assert(password && out);
    if (outlen)
        out[0] = '\0';
    size_t pwlen = strnlen(password, SIG_PASSWORD_MAX + 1);
    if (pwlen > SIG_PASSWORD_MAX)
        return -EINVAL;
    unsigned char salt[SCRYPT_SALT_BYTES], key[SCRYPT_HASH_BYTES];
    char salt_b64[(4 * SCRYPT_SALT_BYTES + 2) / 3 + 1],
        key_b64[(4 * SCRYPT_HASH_BYTES + 2) / 3 + 1];
    if (RAND_bytes(salt, sizeof(salt)) != 1 ||
        scrypt_derive(password, pwlen, salt, sizeof(salt), SCRYPT_N, SCRYPT_R, SCRYPT_P, key,
                      sizeof(key)))
        return -EIO;
    b64_encode(b64_std, salt, sizeof(salt), salt_b64);
    b64_encode(b64_std, key, sizeof(key), key_b64);
    OPENSSL_cleanse(key, sizeof(key));
    int n = snprintf(out, outlen, HASH_PREFIX "%d$%d$%d$%s$%s", SCRYPT_N, SCRYPT_R, SCRYPT_P,
                     salt_b64, key_b64);
    if (n < 0 || (size_t)n >= outlen) {
        if (outlen)
            out[0] = '\0';
        return -ENOSPC;
    }
    return 0;
}

/*
 * Reads a decimal number of at most 10 digits, no sign, no leading zero,
 * ending at `end`; moves *s past `end`. Returns false on anything else.
 */
static bool parse_number(const char **s, char end, uint64_t *out)
{
    const char *p = *s;
    uint64_t v = 0;
    size_t digits = 0;
    while (*p >= '0' && *p <= '9' && digits < 11) {
        v = v * 10 + (uint64_t)(*p - '0');
        p++;
        digits++;
    }
    if (digits == 0 || digits > 10 || (digits > 1 && **s == '0') || *p != end)
        return false;
    *out = v;
    *s = p + 1;
    return true;
}

/* Parses and bounds-checks scrypt$N$r$p$salt$hash. Returns false for anything out of bounds. */
static bool parse_hash(const char *encoded, struct scrypt_hash *h)
{
    if (strncmp(encoded, HASH_PREFIX, strlen(HASH_PREFIX)) != 0 ||
        strnlen(encoded, SIG_PASSWORD_HASH_MAX) >= SIG_PASSWORD_HASH_MAX)
        return false;
    const char *s = encoded + strlen(HASH_PREFIX);
    uint64_t n, r, p;
    if (!parse_number(&s, '$', &n) || !parse_number(&s, '$', &r) || !parse_number(&s, '$', &p))
        return false;
    /* N a power of two in range; r, p from 1; then memory and work as a whole. */
    if (n < SCRYPT_N_MIN || n > SCRYPT_N_MAX || (n & (n - 1)) != 0 || r < 1 || r > SCRYPT_R_MAX ||
        p < 1 || p > SCRYPT_P_MAX || 128 * r * (n + 2 + p) > SCRYPT_MEM_MAX ||
        n * r * p > SCRYPT_WORK_MAX)
        return false;
    h->n = n;
    h->r = (uint32_t)r;
    h->p = (uint32_t)p;
    const char *dollar = strchr(s, '$');
    if (!dollar || strchr(dollar + 1, '$'))
        return false;
    long salt_len = b64_decode(b64_std, s, (size_t)(dollar - s), h->salt, sizeof(h->salt));
    long hash_len = b64_decode(b64_std, dollar + 1, strlen(dollar + 1), h->hash, sizeof(h->hash));
    if (salt_len < SCRYPT_SALT_MIN || hash_len < SCRYPT_HASH_MIN)
        return false;
    h->salt_len = (size_t)salt_len;
    h->hash_len = (size_t)hash_len;
    return true;
}

bool sig_password_verify(const char *password, const char *encoded)
{
    if (!password || !encoded)
        return false;
    size_t pwlen = strnlen(password, SIG_PASSWORD_MAX + 1);
    struct scrypt_hash h;
    if (pwlen > SIG_PASSWORD_MAX || !parse_hash(encoded, &h))
        return false;
    unsigned char key[SCRYPT_BYTES_MAX];
    bool ok =
        scrypt_derive(password, pwlen, h.salt, h.salt_len, h.n, h.r, h.p, key, h.hash_len) == 0 &&
        CRYPTO_memcmp(key, h.hash, h.hash_len) == 0;
    OPENSSL_cleanse(key, sizeof(key));
    return ok;
}

/* ------------------------------------------------------------------------- */
/* SQLite helpers                                                             */
/* ------------------------------------------------------------------------- */

static int exec(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    char *msg = NULL;
    if (sqlite3_exec(db, sql, NULL, NULL, &msg) != SQLITE_OK) {
        if (err)
            snprintf(err, errlen, "accounts: %s", msg ? msg : sqlite3_errmsg(db));
        sqlite3_free(msg);
        return -EIO;
    }
    return 0;
}

/* Rolls back whatever transaction is open; for error paths, so its own error is ignored. */
static void rollback(sqlite3 *db)
{
    if (!sqlite3_get_autocommit(db))
        sqlite3_exec(db, "ROLLBACK;", NULL, NULL, NULL);
}

/* Prepares `sql`; NULL on failure (with `err`, when given, saying why). */
static sqlite3_stmt *prepare(sqlite3 *db, const char *sql, char *err, size_t errlen)
{
    sqlite3_stmt *st = NULL;
    if (sqlite3_prepare_v2(db, sql, -1, &st, NULL) != SQLITE_OK) {
        if (err)
            snprintf(err, errlen, "accounts: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
        return NULL;
    }
    return st;
}

/* One integer from a one-row query (no parameters); -1 on error. */
static int64_t query_int(sqlite3 *db, const char *sql)
{
    sqlite3_stmt *st = prepare(db, sql, NULL, 0);
    int64_t v = -1;
    if (st && sqlite3_step(st) == SQLITE_ROW)
        v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    return v;
}

static int migrate(sqlite3 *db, char *err, size_t errlen)
{
    for (;;) {
        if (exec(db, "BEGIN IMMEDIATE;", err, errlen))
            return -EIO;
        /* Read inside the write lock: another process may have migrated meanwhile. */
        int64_t v = query_int(db, "PRAGMA user_version");
        if (v < 0 || v > MIGRATION_COUNT) {
            if (v < 0)
                snprintf(err, errlen, "accounts: cannot read the schema version: %s",
                         sqlite3_errmsg(db));
            else
                snprintf(err, errlen,
                         "accounts: the database has schema version %lld, newer than this "
                         "build's %d; use a newer tabib",
                         (long long)v, MIGRATION_COUNT);
            rollback(db);
            return -EIO;
        }
        if (v == MIGRATION_COUNT)
            return exec(db, "COMMIT;", err, errlen);
        char bump[64];
        snprintf(bump, sizeof(bump), "PRAGMA user_version = %d;", (int)v + 1);
        if (exec(db, migrations[v], err, errlen) || exec(db, bump, err, errlen) ||
            exec(db, "COMMIT;", err, errlen)) {
            rollback(db);
            return -EIO;
        }
    }
}

/*
 * Creates data_dir/accounts.db 0600 before SQLite touches it (SQLite would
 * create it 0644 less the umask), and tightens an existing file that is open
 * to others. SQLite gives the -wal and -shm files the database's mode.
 */
static int create_private_file(const char *path, char *err, size_t errlen)
{
    int fd = open(path, O_RDWR | O_CREAT | O_CLOEXEC | O_NOFOLLOW, 0600);
    if (fd < 0) {
        snprintf(err, errlen, "accounts: cannot open \"%s\": %s", path, strerror(errno));
        return -errno;
    }
    struct stat st;
    int rc = 0;
    if (fstat(fd, &st) != 0) {
        rc = -errno;
        snprintf(err, errlen, "accounts: cannot stat \"%s\": %s", path, strerror(errno));
    } else if (!S_ISREG(st.st_mode)) {
        rc = -EINVAL;
        snprintf(err, errlen, "accounts: \"%s\" is not a regular file", path);
    } else if ((st.st_mode & 07777) != 0600 && fchmod(fd, 0600) != 0) {
        rc = -errno;
        snprintf(err, errlen, "accounts: cannot make \"%s\" private (mode 0600): %s", path,
                 strerror(errno));
    }
    close(fd);
    return rc;
}

void sig_accounts_close(struct sig_accounts *accounts)
{
    if (!accounts)
        return;
    sqlite3_close(accounts->db);
    free(accounts);
}

struct sig_accounts *sig_accounts_open(const char *data_dir, char *err, size_t errlen)
{
    assert(data_dir && err);
    struct sig_accounts *a = calloc(1, sizeof(*a));
    if (!a) {
        snprintf(err, errlen, "accounts: out of memory");
        return NULL;
    }
    char path[4096];
    if (mkdir(data_dir, 0700) != 0 && errno != EEXIST) {
        snprintf(err, errlen, "data_dir: cannot create \"%s\": %s", data_dir, strerror(errno));
        goto fail;
    }
    if (snprintf(path, sizeof(path), "%s/accounts.db", data_dir) >= (int)sizeof(path)) {
        snprintf(err, errlen, "data_dir: path is too long");
        goto fail;
    }
    if (create_private_file(path, err, errlen))
        goto fail;
    if (sqlite3_open_v2(path, &a->db, SQLITE_OPEN_READWRITE | SQLITE_OPEN_NOMUTEX, NULL) !=
        SQLITE_OK) {
        snprintf(err, errlen, "accounts: cannot open \"%s\": %s", path,
                 a->db ? sqlite3_errmsg(a->db) : "out of memory");
        goto fail;
    }
    sqlite3_busy_timeout(a->db, 5000);
    /* journal_mode answers with the mode now in force; anything but "wal" is a failure. */
    sqlite3_stmt *st = prepare(a->db, "PRAGMA journal_mode=WAL", err, errlen);
    bool wal = st && sqlite3_step(st) == SQLITE_ROW &&
               sqlite3_stricmp((const char *)sqlite3_column_text(st, 0), "wal") == 0;
    sqlite3_finalize(st);
    if (!wal) {
        snprintf(err, errlen, "accounts: cannot switch \"%s\" to WAL mode: %s", path,
                 sqlite3_errmsg(a->db));
        goto fail;
    }
    if (exec(a->db, "PRAGMA synchronous=FULL; PRAGMA foreign_keys=ON;", err, errlen) ||
        migrate(a->db, err, errlen))
        goto fail;
    return a;
fail:
    sig_accounts_close(a);
    return NULL;
}

/* ------------------------------------------------------------------------- */
/* Accounts                                                                   */
/* ------------------------------------------------------------------------- */

#define USER_COLUMNS "u.id, u.username, u.role, u.disabled, u.all_clinics"

/* Fills `u` from the USER_COLUMNS at `col` onwards, then its clinics. 0 or -EIO. */
static int user_from_row(sqlite3 *db, sqlite3_stmt *row, int col, struct sig_user *u)
{
    memset(u, 0, sizeof(*u));
    u->id = sqlite3_column_int64(row, col);
    const char *name = (const char *)sqlite3_column_text(row, col + 1);
    u->role = role_from_text((const char *)sqlite3_column_text(row, col + 2));
    u->disabled = sqlite3_column_int(row, col + 3) != 0;
    u->all_clinics = sqlite3_column_int(row, col + 4) != 0;
    if (!name || strlen(name) >= sizeof(u->username) || u->role == SIG_ROLE_NONE)
        return -EIO;
    strcpy(u->username, name);

    sqlite3_stmt *st = prepare(
        db, "SELECT clinic_id FROM user_clinics WHERE user_id = ? ORDER BY clinic_id", NULL, 0);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, u->id);
    int rc, status = 0;
    while ((rc = sqlite3_step(st)) == SQLITE_ROW) {
        const char *clinic = (const char *)sqlite3_column_text(st, 0);
        if (u->clinic_count == SIG_USER_CLINIC_MAX || !clinic || strlen(clinic) >= SIG_ID_MAX) {
            status = -EIO;
            break;
        }
        strcpy(u->clinics[u->clinic_count++], clinic);
    }
    if (status == 0 && rc != SQLITE_DONE)
        status = -EIO;
    sqlite3_finalize(st);
    return status;
}

/*
 * Reads the account `username` into `u` and, when hash_out is given, its
 * password hash (SIG_PASSWORD_HASH_MAX bytes). 0, -ENOENT or -EIO.
 */
static int load_user(sqlite3 *db, const char *username, struct sig_user *u, char *hash_out)
{
    sqlite3_stmt *st = prepare(
        db, "SELECT " USER_COLUMNS ", u.password_hash FROM users u WHERE u.username = ?", NULL, 0);
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    int rc = sqlite3_step(st), status;
    if (rc == SQLITE_ROW) {
        status = user_from_row(db, st, 0, u);
        const char *hash = (const char *)sqlite3_column_text(st, 5);
        if (status == 0 && hash_out) {
            if (hash && strlen(hash) < SIG_PASSWORD_HASH_MAX)
                strcpy(hash_out, hash);
            else
                hash_out[0] = '\0'; /* matches nothing */
        }
    } else {
        status = rc == SQLITE_DONE ? -ENOENT : -EIO;
    }
    sqlite3_finalize(st);
    return status;
}

int sig_accounts_count(struct sig_accounts *accounts)
{
    assert(accounts);
    int64_t n = query_int(accounts->db, "SELECT count(*) FROM users");
    return n < 0 || n > INT32_MAX ? -EIO : (int)n;
}

int sig_accounts_get(struct sig_accounts *accounts, const char *username, struct sig_user *out)
{
    assert(accounts && out);
    if (!sig_username_valid(username))
        return -ENOENT;
    return load_user(accounts->db, username, out, NULL);
}

/* Copies at most 63 bytes of `s` for an error message, '?' for anything unprintable. */
static const char *printable(const char *s, char out[SIG_ID_MAX])
{
    size_t i = 0;
    for (; s && s[i] && i < SIG_ID_MAX - 1; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f && s[i] != '"' ? s[i] : '?';
    out[i] = '\0';
    return out;
}

/* Checks a new password against the policy. 0 or -EINVAL with `err`. */
static int check_password(const char *password, char *err, size_t errlen)
{
    size_t len = password ? strnlen(password, SIG_PASSWORD_MAX + 1) : 0;
    if (len < SIG_PASSWORD_MIN) {
        snprintf(err, errlen, "the password is too short: at least %d bytes", SIG_PASSWORD_MIN);
        return -EINVAL;
    }
    if (len > SIG_PASSWORD_MAX) {
        snprintf(err, errlen, "the password is too long: at most %d bytes", SIG_PASSWORD_MAX);
        return -EINVAL;
    }
    return 0;
}

/* Checks the arguments of a new account. 0 or -EINVAL with `err`. */
static int check_new_user(const char *username, enum sig_role role, const char *const *clinics,
                          unsigned n_clinics, bool all_clinics, char *err, size_t errlen)
{
    char shown[SIG_ID_MAX];
    if (!sig_username_valid(username)) {
        snprintf(err, errlen,
                 "invalid username \"%s\": use 1 to %d characters of a-z, 0-9, '.', '_' and '-'",
                 printable(username, shown), SIG_USERNAME_MAX - 1);
        return -EINVAL;
    }
    if (role != SIG_ROLE_DOCTOR && role != SIG_ROLE_ADMIN) {
        snprintf(err, errlen, "invalid role \"%s\": an account is a doctor or an admin",
                 sig_role_name(role));
        return -EINVAL;
    }
    if (n_clinics > SIG_USER_CLINIC_MAX) {
        snprintf(err, errlen, "too many clinics (%u): at most %d per account", n_clinics,
                 SIG_USER_CLINIC_MAX);
        return -EINVAL;
    }
    if (n_clinics > 0 && !clinics) {
        snprintf(err, errlen, "the clinic list is missing");
        return -EINVAL;
    }
    for (unsigned i = 0; i < n_clinics; i++) {
        if (!sig_clinic_id_valid(clinics[i])) {
            snprintf(err, errlen,
                     "invalid clinic id \"%s\": use 1 to %d characters of a-z, 0-9, '_' and '-'",
                     printable(clinics[i], shown), SIG_ID_MAX - 1);
            return -EINVAL;
        }
        for (unsigned j = 0; j < i; j++)
            if (strcmp(clinics[i], clinics[j]) == 0) {
                snprintf(err, errlen, "clinic \"%s\" is listed twice", clinics[i]);
                return -EINVAL;
            }
    }
    if (role == SIG_ROLE_DOCTOR && all_clinics) {
        snprintf(err, errlen, "only an admin can have every clinic; list a doctor's clinics");
        return -EINVAL;
    }
    if (role == SIG_ROLE_DOCTOR && n_clinics == 0) {
        snprintf(err, errlen, "a doctor needs at least one clinic");
        return -EINVAL;
    }
    if (role == SIG_ROLE_ADMIN && all_clinics && n_clinics > 0) {
        snprintf(err, errlen, "an admin has either every clinic or a list of clinics, not both");
        return -EINVAL;
    }
    if (role == SIG_ROLE_ADMIN && !all_clinics && n_clinics == 0) {
        snprintf(err, errlen, "an admin needs a list of clinics or every clinic");
        return -EINVAL;
    }
    return 0;
}

/*
 * Inserts a checked account with a ready hash; the caller holds a write
 * transaction. 0, -EEXIST or -EIO, with `err`.
 */
static int insert_user(sqlite3 *db, const char *username, enum sig_role role,
                       const char *const *clinics, unsigned n_clinics, bool all_clinics,
                       const char *hash, char *err, size_t errlen)
{
    sqlite3_stmt *st = prepare(db,
                               "INSERT INTO users (username, role, disabled, all_clinics, "
                               "password_hash, created_ms) VALUES (?, ?, 0, ?, ?, ?)",
                               err, errlen);
    if (!st)
        return -EIO;
    sqlite3_bind_text(st, 1, username, -1, SQLITE_STATIC);
    sqlite3_bind_text(st, 2, sig_role_name(role), -1, SQLITE_STATIC);
    sqlite3_bind_int(st, 3, all_clinics);
    sqlite3_bind_text(st, 4, hash, -1, SQLITE_STATIC);
    sqlite3_bind_int64(st, 5, base_wall_ms());
    int rc = sqlite3_step(st);
    int ext = sqlite3_extended_errcode(db);
    sqlite3_finalize(st);
    if (rc != SQLITE_DONE) {
        if (ext == SQLITE_CONSTRAINT_UNIQUE) {
            snprintf(err, errlen, "user \"%s\" already exists", username);
            return -EEXIST;
        }
        snprintf(err, errlen, "accounts: cannot add \"%s\": %s", username, sqlite3_errstr(ext));
        return -EIO;
    }
    int64_t id = sqlite3_last_insert_rowid(db);
    st = prepare(db, "INSERT INTO user_clinics (user_id, clinic_id) VALUES (?, ?)", err, errlen);
    if (!st)
        return -EIO;
    for (unsigned i = 0; i < n_clinics; i++) {
        sqlite3_reset(st);
        sqlite3_bind_int64(st, 1, id);
        sqlite3_bind_text(st, 2, clinics[i], -1, SQLITE_STATIC);
        if (sqlite3_step(st) != SQLITE_DONE) {
            snprintf(err, errlen, "accounts: cannot add the clinics of \"%s\": %s", username,
                     sqlite3_errmsg(db));
            sqlite3_finalize(st);
            return -EIO;
        }
    }
    sqlite3_finalize(st);
    return 0;
}

int sig_accounts_add_user(struct sig_accounts *accounts, const char *username, enum sig_role role,
                          const char *const *clinics, unsigned n_clinics, bool all_clinics,
                          const char *password, char *err, size_t errlen)
{
    assert(accounts && err);
    int rc = check_new_user(username, role, clinics, n_clinics, all_clinics, err, errlen);
    if (rc || (rc = check_password(password, err, errlen)))
        return rc;
    /* Hash before taking the write lock: 50 ms of scrypt need not block the other process. */
    char hash[SIG_PASSWORD_HASH_MAX];
    if (sig_password_hash(password, hash, sizeof(hash))) {
        snprintf(err, errlen, "accounts: cannot hash the password");
        return -EIO;
    }
    if (exec(accounts->db, "BEGIN IMMEDIATE;", err, errlen))
        return -EIO;
    rc = insert_user(accounts->db, username, role, clinics, n_clinics, all_clinics, hash, err,
                     errlen);
    if (rc == 0)
        rc = exec(accounts->db, "COMMIT;", err, errlen);
    if (rc)
        rollback(accounts->db);
    return rc;
}

/* Generates the first admin's password: FIRST_ADMIN_PASS_LEN of [A-Za-z0-9]. 0 or -EIO. */
static int random_password(char *out)
{
    const size_t n = sizeof(PASSWORD_ALPHANUMERIC) - 1; /* 62 */
    size_t got = 0;
    unsigned char buf[64];
    while (got < FIRST_ADMIN_PASS_LEN) {
        if (RAND_bytes(buf, sizeof(buf)) != 1)
            return -EIO;
        /* Rejection sampling: only bytes below 248 (4 * 62), so every letter is equally likely. */
        for (size_t i = 0; i < sizeof(buf) && got < FIRST_ADMIN_PASS_LEN; i++)
            if (buf[i] < 256 - 256 % n)
                out[got++] = PASSWORD_ALPHANUMERIC[buf[i] % n];
    }
    out[got] = '\0';
    OPENSSL_cleanse(buf, sizeof(buf));
    return 0;
}
int sig_accounts_ensure_first_admin(struct sig_accounts *accounts, char *password_out,
                                    size_t outlen)
{
    static_assert(FIRST_ADMIN_PASS_LEN < 32, "the password fits the 32 bytes the contract asks");
    assert(accounts && password_out);
    if (outlen < 32)
        return -EINVAL;
    password_out[0] = '\0';
    int n = sig_accounts_count(accounts);
    if (n != 0)
        return n < 0 ? n : 0;
    char hash[SIG_PASSWORD_HASH_MAX];
    if (random_password(password_out) || sig_password_hash(password_out, hash, sizeof(hash))) {
        OPENSSL_cleanse(password_out, outlen);
        return -EIO;
    }
    char err[256];
    int result = -EIO;
    if (exec(accounts->db, "BEGIN IMMEDIATE;", err, sizeof(err)) == 0) {
        /* Count again under the write lock: another process may have added one meanwhile. */
        int64_t now = query_int(accounts->db, "SELECT count(*) FROM users");
        if (now == 0 &&
            insert_user(accounts->db, FIRST_ADMIN_NAME, SIG_ROLE_ADMIN, NULL, 0, true, hash, err,
                        sizeof(err)) == 0 &&
            exec(accounts->db, "COMMIT;", err, sizeof(err)) == 0)
            result = 1;
        else if (now > 0)
            result = 0;
    }
    if (result != 1) {
        rollback(accounts->db);
        OPENSSL_cleanse(password_out, outlen);
    }
    return result;
}

/* Ends every session of user `id`; the caller holds a write transaction. 0 or -EIO. */
static int end_sessions(sqlite3 *db, int64_t id)
{
    sqlite3_stmt *st = prepare(db, "DELETE FROM sessions WHERE user_id = ?", NULL, 0);
    if (!st)
        return -EIO;
    sqlite3_bind_int64(st, 1, id);
    int rc = sqlite3_step(st) == SQLITE_DONE ? 0 : -EIO;
    sqlite3_finalize(st);
    return rc;
}

/*
 * Runs `sql`, an UPDATE of one account ending in RETURNING id, with up to two
 * text parameters, then ends that account's sessions, all in one transaction:
 * no session survives the change, even for a moment. 0, -ENOENT or -EIO (with
 * `err` when given).
 */
static int update_account(sqlite3 *db, const char *sql, const char *text1, const char *text2,
                          char *err, size_t errlen)
{
    if (exec(db, "BEGIN IMMEDIATE;", err, errlen))
        return -EIO;
    int rc = -EIO;
    int64_t id = 0;
    sqlite3_stmt *st = prepare(db, sql, err, errlen);
    if (st) {
        sqlite3_bind_text(st, 1, text1, -1, SQLITE_STATIC);
        if (text2)
            sqlite3_bind_text(st, 2, text2, -1, SQLITE_STATIC);
        int step = sqlite3_step(st);
        if (step == SQLITE_ROW) {
            id = sqlite3_column_int64(st, 0);
            step = sqlite3_step(st);
        }
        if (step == SQLITE_DONE)
            rc = id > 0 ? 0 : -ENOENT;
        else if (err)
            snprintf(err, errlen, "accounts: %s", sqlite3_errmsg(db));
        sqlite3_finalize(st);
    }
    if (rc == 0)
        rc = end_sessions(db, id);
    if (rc == 0)
        rc = exec(db, "COMMIT;", err, errlen);
    if (rc)
        rollback(db);
    return rc;
}

int sig_accounts_set_password(struct sig_accounts *accounts, const char *username,
                              const char *password, char *err, size_t errlen)
{
    assert(accounts && err);
    char shown[SIG_ID_MAX];
    if (!sig_username_valid(username)) {
        snprintf(err, errlen, "invalid username \"%s\"", printable(username, shown));
        return -EINVAL;
    }
    int rc = check_password(password, err, errlen);
    if (rc)
        return rc;
    char hash[SIG_PASSWORD_HASH_MAX];
    if (sig_password_hash(password, hash, sizeof(hash))) {
        snprintf(err, errlen, "accounts: cannot hash the password");
        return -EIO;
    }
    rc = update_account(accounts->db,
                        "UPDATE users SET password_hash = ? WHERE username = ? RETURNING id", hash,
                        username, err, errlen);
    if (rc == -ENOENT)
        snprintf(err, errlen, "no user \"%s\"", username);
    return rc;
}

int sig_accounts_disable(struct sig_accounts *accounts, const char *username)
{
    assert(accounts);
    if (!sig_username_valid(username))
        return -ENOENT;
    return update_account(accounts->db,
                          "UPDATE users SET disabled = 1 WHERE username = ? RETURNING id", username,
                          NULL, NULL, 0);
}

int sig_accounts_list(struct sig_accounts *accounts,
                      void (*fn)(const struct sig_user *user, void *arg), void *arg)
{
    assert(accounts && fn);
    /* Read everything first, so that `fn` may use the store while we are not mid-query. */
    sqlite3_stmt *st =
        prepare(accounts->db, "SELECT " USER_COLUMNS " FROM users u ORDER BY u.username", NULL, 0);
    if (!st)
        return -EIO;
    struct sig_user *users = NULL;
    size_t n = 0, cap = 0;
    int rc = 0, step;
    while ((step = sqlite3_step(st)) == SQLITE_ROW) {
        if (n == cap) {
            size_t more = cap ? 2 * cap : 16;
            struct sig_user *grown = realloc(users, more * sizeof(*users));
            if (!grown) {
                rc = -EIO;
                break;
            }
            users = grown;
            cap = more;
        }
        if ((rc = user_from_row(accounts->db, st, 0, &users[n])) != 0)
            break;
        n++;
    }
    if (rc == 0 && step != SQLITE_DONE)
        rc = -EIO;
    sqlite3_finalize(st);
    for (size_t i = 0; rc == 0 && i < n; i++)
        fn(&users[i], arg);
    free(users);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Sessions                                                                   */
/* ------------------------------------------------------------------------- */

enum sig_login_result sig_accounts_login(struct sig_accounts *accounts, const char *username,
                                         const char *password, int64_t now_ms, int64_t ttl_ms,
                                         char *token_out, struct sig_user *user_out)
{
    assert(accounts && token_out);
    token_out[0] = '\0';
    if (ttl_ms <= 0 || now_ms < 0 || now_ms > INT64_MAX - ttl_ms)
        return SIG_LOGIN_ERROR;
    struct sig_user user;
    char hash[SIG_PASSWORD_HASH_MAX] = "";
    int found =
        sig_username_valid(username) ? load_user(accounts->db, username, &user, hash) : -ENOENT;
    if (found == -EIO)
        return SIG_LOGIN_ERROR;
    /*
     * Exactly one scrypt on every path from here, so the time taken does not
     * say whether the name exists: an unknown name (or an over-long password)
     * is checked against the dummy hash, whose parameters are ours. A wrong
     * password is not told apart from an unknown name, and "disabled" is told
     * only to someone who knows the password.
     */
    bool too_long = !password || strnlen(password, SIG_PASSWORD_MAX + 1) > SIG_PASSWORD_MAX;
    bool right = sig_password_verify(too_long ? "" : password, found == 0 ? hash : DUMMY_HASH);
    if (found != 0 || too_long || !right)
        return SIG_LOGIN_BAD_CREDENTIALS;
    if (user.disabled)
        return SIG_LOGIN_DISABLED;

    char token[SIG_TOKEN_CHARS + 1];
    unsigned char th[TOKEN_HASH_BYTES];
    if (sig_random_token(token) || token_hash(token, th))
        return SIG_LOGIN_ERROR;
    enum sig_login_result result = SIG_LOGIN_ERROR;
    sqlite3 *db = accounts->db;
    sqlite3_stmt *purge = NULL, *insert = NULL;
    if (exec(db, "BEGIN IMMEDIATE;", NULL, 0))
        goto out;
    /* Sessions that ran out go when new ones come, in the same commit. */
    purge = prepare(db, "DELETE FROM sessions WHERE expires_ms <= ?", NULL, 0);
    /*
     * Insert only if the account is still as checked: a disable or a new
     * password committed by another process since then wins.
     */
    insert = prepare(db,
                     "INSERT INTO sessions (token_hash, user_id, created_ms, expires_ms) "
                     "SELECT ?, id, ?, ? FROM users "
                     "WHERE id = ? AND disabled = 0 AND password_hash = ?",
                     NULL, 0);
    if (!purge || !insert)
        goto out;
    sqlite3_bind_int64(purge, 1, now_ms);
    sqlite3_bind_blob(insert, 1, th, sizeof(th), SQLITE_STATIC);
    sqlite3_bind_int64(insert, 2, now_ms);
    sqlite3_bind_int64(insert, 3, now_ms + ttl_ms);
    sqlite3_bind_int64(insert, 4, user.id);
    sqlite3_bind_text(insert, 5, hash, -1, SQLITE_STATIC);
    if (sqlite3_step(purge) != SQLITE_DONE || sqlite3_step(insert) != SQLITE_DONE)
        goto out;
    if (sqlite3_changes(db) != 1) {
        result = SIG_LOGIN_BAD_CREDENTIALS;
        goto out;
    }
    sqlite3_reset(insert);
    sqlite3_reset(purge);
    if (exec(db, "COMMIT;", NULL, 0))
        goto out;
    result = SIG_LOGIN_OK;
    memcpy(token_out, token, sizeof(token));
    if (user_out)
        *user_out = user;
out:
    sqlite3_finalize(purge);
    sqlite3_finalize(insert);
    if (result != SIG_LOGIN_OK)
        rollback(db);
    OPENSSL_cleanse(token, sizeof(token));
    return result;
}

int sig_accounts_session(struct sig_accounts *accounts, const char *token, int64_t now_ms,
                         struct sig_user *user_out)
{
    assert(accounts);
    unsigned char th[TOKEN_HASH_BYTES];
    if (!token_well_formed(token))
        return -ENOENT;
    if (token_hash(token, th))
        return -EIO;
    sqlite3_stmt *st = prepare(accounts->db,
                               "SELECT " USER_COLUMNS " FROM sessions s "
                               "JOIN users u ON u.id = s.user_id "
                               "WHERE s.token_hash = ? AND s.expires_ms > ? AND u.disabled = 0",
                               NULL, 0);
    if (!st)
        return -EIO;
    sqlite3_bind_blob(st, 1, th, sizeof(th), SQLITE_STATIC);
    sqlite3_bind_int64(st, 2, now_ms);
    struct sig_user user;
    int step = sqlite3_step(st), rc;
    if (step == SQLITE_ROW)
        rc = user_from_row(accounts->db, st, 0, &user);
    else
        rc = step == SQLITE_DONE ? -ENOENT : -EIO;
    sqlite3_finalize(st);
    if (rc == 0 && user_out)
        *user_out = user;
    return rc;
}

int sig_accounts_logout(struct sig_accounts *accounts, const char *token)
{
    assert(accounts);
    unsigned char th[TOKEN_HASH_BYTES];
    if (!token_well_formed(token))
        return -ENOENT;
    if (token_hash(token, th))
        return -EIO;
    sqlite3_stmt *st = prepare(accounts->db, "DELETE FROM sessions WHERE token_hash = ?", NULL, 0);
    if (!st)
        return -EIO;
    sqlite3_bind_blob(st, 1, th, sizeof(th), SQLITE_STATIC);
    int rc = sqlite3_step(st) != SQLITE_DONE      ? -EIO
             : sqlite3_changes(accounts->db) == 1 ? 0
                                                  : -ENOENT;
    sqlite3_finalize(st);
    return rc;
}

/* ------------------------------------------------------------------------- */
/* Appointments                                                               */
/* ------------------------------------------------------------------------- */

/*
 * True when `ref` is "" or up to 63 bytes without control characters. It is
 * the staff's free-form reference (a record number, "bed 4"), so any other
 * text, UTF-8 included, is theirs to choose; it is stored and shown, never
 * parsed.
 */
static bool patient_ref_valid(const char *ref)
{
    if (!ref || strnlen(ref, SIG_ID_MAX) >= SIG_ID_MAX)
        return false;
    for (const unsigned char *p = (const unsigned char *)ref; *p; p++)
        if (*p < 0x20 || *p == 0x7f)
            return false;
    return true;
}

int sig_accounts_issue_appointment(struct sig_accounts *accounts,
                                   const struct sig_appointment *appt, char *token_out)
{
    assert(accounts && appt && token_out);
    token_out[0] = '\0';
    if (!sig_clinic_id_valid(appt->clinic) || !patient_ref_valid(appt->patient_ref) ||
        (appt->priority != 0 && appt->priority != 1) || appt->issued_by <= 0 ||
        appt->expires_ms <= 0)
        return -EINVAL;
    char token[SIG_TOKEN_CHARS + 1];
    unsigned char th[TOKEN_HASH_BYTES];
    if (sig_random_token(token) || token_hash(token, th))
        return -EIO;
    sqlite3_stmt *st = prepare(accounts->db,
                               "INSERT INTO appointments (token_hash, clinic, patient_ref, "
                               "priority, issued_by, created_ms, expires_ms) "
                               "VALUES (?, ?, ?, ?, ?, ?, ?)",
                               NULL, 0);
    int rc = -EIO;
    if (st) {
        sqlite3_bind_blob(st, 1, th, sizeof(th), SQLITE_STATIC);
        sqlite3_bind_text(st, 2, appt->clinic, -1, SQLITE_STATIC);
        sqlite3_bind_text(st, 3, appt->patient_ref, -1, SQLITE_STATIC);
        sqlite3_bind_int(st, 4, appt->priority);
        sqlite3_bind_int64(st, 5, appt->issued_by);
        sqlite3_bind_int64(st, 6, base_wall_ms());
        sqlite3_bind_int64(st, 7, appt->expires_ms);
        if (sqlite3_step(st) == SQLITE_DONE)
            rc = 0;
        else if (sqlite3_extended_errcode(accounts->db) == SQLITE_CONSTRAINT_FOREIGNKEY)
            rc = -EINVAL; /* issued_by names no account */
        sqlite3_finalize(st);
    }
    if (rc == 0)
        memcpy(token_out, token, sizeof(token));
    OPENSSL_cleanse(token, sizeof(token));
    return rc;
}

int sig_accounts_redeem_appointment(struct sig_accounts *accounts, const char *token,
                                    int64_t now_ms, const char *only_clinic,
                                    struct sig_appointment *out)
{
    assert(accounts);
    unsigned char th[TOKEN_HASH_BYTES];
    if (!token_well_formed(token))
        return -ENOENT;
    if (token_hash(token, th))
        return -EIO;
    sqlite3 *db = accounts->db;
    if (exec(db, "BEGIN IMMEDIATE;", NULL, 0))
        return -EIO;
    int rc = -EIO;
    struct sig_appointment appt;
    memset(&appt, 0, sizeof(appt));
    /*
     * The single use rests on this one UPDATE: it claims the row only while
     * unredeemed and unexpired, under the write lock, so of two redeemers
     * (threads, processes) exactly one sees a change.
     */
    sqlite3_stmt *claim = prepare(db,
                                  "UPDATE appointments SET redeemed_ms = ?1 WHERE token_hash = ?2 "
                                  "AND redeemed_ms IS NULL AND expires_ms > ?1",
                                  NULL, 0);
    sqlite3_stmt *read = prepare(db,
                                 "SELECT clinic, patient_ref, priority, issued_by, expires_ms "
                                 "FROM appointments WHERE token_hash = ?",
                                 NULL, 0);
    if (!claim || !read)
        goto out;
    if (only_clinic) {
        /* Under the same write lock: look before claiming, so a wrong clinic costs nothing. */
        sqlite3_bind_blob(read, 1, th, sizeof(th), SQLITE_STATIC);
        if (sqlite3_step(read) == SQLITE_ROW && sqlite3_column_int64(read, 4) > now_ms) {
            const char *for_clinic = (const char *)sqlite3_column_text(read, 0);
            if (for_clinic && strcmp(for_clinic, only_clinic) != 0) {
                snprintf(appt.clinic, sizeof(appt.clinic), "%s", for_clinic);
                if (out)
                    *out = appt;
                rc = -EXDEV;
                goto out;
            }
        }
        sqlite3_reset(read);
    }
    sqlite3_bind_int64(claim, 1, now_ms);
    sqlite3_bind_blob(claim, 2, th, sizeof(th), SQLITE_STATIC);
    if (sqlite3_step(claim) != SQLITE_DONE)
        goto out;
    if (sqlite3_changes(db) != 1) {
        rc = -ENOENT;
        goto out;
    }
    sqlite3_bind_blob(read, 1, th, sizeof(th), SQLITE_STATIC);
    if (sqlite3_step(read) != SQLITE_ROW)
        goto out;
    const char *clinic = (const char *)sqlite3_column_text(read, 0);
    const char *ref = (const char *)sqlite3_column_text(read, 1);
    if (!clinic || strlen(clinic) >= sizeof(appt.clinic) || (ref && strlen(ref) >= SIG_ID_MAX))
        goto out;
    strcpy(appt.clinic, clinic);
    strcpy(appt.patient_ref, ref ? ref : "");
    appt.priority = sqlite3_column_int(read, 2);
    appt.issued_by = sqlite3_column_int64(read, 3);
    appt.expires_ms = sqlite3_column_int64(read, 4);
    sqlite3_reset(read);
    sqlite3_reset(claim);
    if (exec(db, "COMMIT;", NULL, 0) == 0)
        rc = 0;
out:
    sqlite3_finalize(claim);
    sqlite3_finalize(read);
    if (rc != 0)
        rollback(db);
    else if (out)
        *out = appt;
    return rc;
}
