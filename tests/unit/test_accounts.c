/*
 * test_accounts.c - the account store against a real SQLite file: scrypt
 * hashes (round trip, tampering, absurd parameters), accounts, sign-in,
 * sessions, single-use appointments, the first admin, file modes, and the
 * `tabib user` command (password file, standard input, usage errors).
 */
#include <setjmp.h>
#include <stdarg.h>
#include <stddef.h>
#include <stdint.h>

#include <errno.h>
#include <fcntl.h>
#include <ftw.h>
#include <pthread.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <time.h>
#include <unistd.h>

#include <cmocka.h>
#include <openssl/evp.h>
#include <sqlite3.h>

#include "accounts.h"

#define NOW      1800000000000LL /* 2027-01-15, UTC milliseconds */
#define HOUR_MS  3600000LL
#define PASSWORD "correct horse battery"

struct fixture {
    char dir[64];  /* the temporary directory, removed afterwards */
    char data[96]; /* dir/data: the data_dir, not created until opened */
    char db[128];  /* data/accounts.db */
    struct sig_accounts *acc;
    char *out, *err; /* the last CLI run's output */
    size_t out_len, err_len;
};

static int setup(void **state)
{
    struct fixture *f = calloc(1, sizeof(*f));
    if (!f)
        return -1;
    snprintf(f->dir, sizeof(f->dir), "/tmp/tabib-test-accounts-XXXXXX");
    if (!mkdtemp(f->dir))
        return -1;
    snprintf(f->data, sizeof(f->data), "%s/data", f->dir);
    snprintf(f->db, sizeof(f->db), "%s/accounts.db", f->data);
    *state = f;
    return 0;
}

/* As setup(), and opens the store. */
static int setup_open(void **state)
{
    if (setup(state))
        return -1;
    struct fixture *f = *state;
    char err[256];
    f->acc = sig_accounts_open(f->data, err, sizeof(err));
    if (!f->acc) {
        fprintf(stderr, "open: %s\n", err);
        return -1;
    }
    return 0;
}

static int remove_entry(const char *path, const struct stat *st, int flag, struct FTW *ftw)
{
    (void)st;
    (void)flag;
    (void)ftw;
    return remove(path);
}

static int teardown(void **state)
{
    struct fixture *f = *state;
    sig_accounts_close(f->acc);
    free(f->out);
    free(f->err);
    nftw(f->dir, remove_entry, 16, FTW_DEPTH | FTW_PHYS);
    free(f);
    return 0;
}

static void add(struct fixture *f, const char *name, enum sig_role role, const char *clinics_csv,
                const char *password)
{
    char buf[256], err[256];
    const char *clinics[SIG_USER_CLINIC_MAX];
    unsigned n = 0;
    if (clinics_csv) {
        snprintf(buf, sizeof(buf), "%s", clinics_csv);
        for (char *save = NULL, *c = strtok_r(buf, ",", &save); c; c = strtok_r(NULL, ",", &save))
            clinics[n++] = c;
    }
    int rc = sig_accounts_add_user(f->acc, name, role, clinics, n, !clinics_csv, password, err,
                                   sizeof(err));
    if (rc)
        fail_msg("add %s: %d %s", name, rc, err);
}

static void write_file(const char *path, const char *text)
{
    FILE *fp = fopen(path, "w");
    assert_non_null(fp);
    fputs(text, fp);
    fclose(fp);
}

/* True when `needle` appears anywhere in the bytes of file `path`. */
static bool file_contains(const char *path, const char *needle)
{
    FILE *fp = fopen(path, "rb");
    if (!fp)
        return false;
    fseek(fp, 0, SEEK_END);
    long size = ftell(fp);
    rewind(fp);
    char *buf = malloc((size_t)size + 1);
    size_t got = fread(buf, 1, (size_t)size, fp);
    fclose(fp);
    bool found = memmem(buf, got, needle, strlen(needle)) != NULL;
    free(buf);
    return found;
}

static long long query_int(const char *db_path, const char *sql)
{
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(db_path, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *st;
    assert_int_equal(sqlite3_prepare_v2(db, sql, -1, &st, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(st), SQLITE_ROW);
    long long v = sqlite3_column_int64(st, 0);
    sqlite3_finalize(st);
    sqlite3_close(db);
    return v;
}

static double elapsed_ms(const struct timespec *a, const struct timespec *b)
{
    return (double)(b->tv_sec - a->tv_sec) * 1e3 + (double)(b->tv_nsec - a->tv_nsec) / 1e6;
}

/* ------------------------------------------------------------------------- */
/* Password hashes and tokens                                                 */
/* ------------------------------------------------------------------------- */

static void hash_verify_round_trip(void **state)
{
    (void)state;
    char a[SIG_PASSWORD_HASH_MAX], b[SIG_PASSWORD_HASH_MAX];
    assert_int_equal(sig_password_hash(PASSWORD, a, sizeof(a)), 0);
    assert_int_equal(sig_password_hash(PASSWORD, b, sizeof(b)), 0);
    assert_true(strncmp(a, "scrypt$16384$8$1$", 17) == 0);
    assert_string_not_equal(a, b); /* a fresh salt each time */
    assert_null(strstr(a, PASSWORD));
    assert_true(sig_password_verify(PASSWORD, a));
    assert_true(sig_password_verify(PASSWORD, b));
    assert_false(sig_password_verify("correct horse battery ", a));
    assert_false(sig_password_verify("Correct horse battery", a));
    assert_false(sig_password_verify("", a));
    assert_false(sig_password_verify(NULL, a));
    assert_false(sig_password_verify(PASSWORD, NULL));

    /* Non-ASCII passwords are bytes like any other. */
    const char *arabic =
        "\xd9\x83\xd9\x84\xd9\x85\xd8\xa9 \xd8\xb3\xd8\xb1 \xd9\x82\xd9\x88\xd9\x8a\xd8\xa9";
    assert_int_equal(sig_password_hash(arabic, a, sizeof(a)), 0);
    assert_true(sig_password_verify(arabic, a));

    /* Output too small; password too long. */
    assert_int_equal(sig_password_hash(PASSWORD, a, 40), -ENOSPC);
    char long_pw[SIG_PASSWORD_MAX + 2];
    memset(long_pw, 'x', sizeof(long_pw) - 1);
    long_pw[sizeof(long_pw) - 1] = '\0';
    assert_int_equal(sig_password_hash(long_pw, a, sizeof(a)), -EINVAL);
    long_pw[SIG_PASSWORD_MAX] = '\0';
    assert_int_equal(sig_password_hash(long_pw, a, sizeof(a)), 0);
    assert_true(sig_password_verify(long_pw, a));
}

/* Standard base64 of the unpadded field at `s` (up to '$' or the end) into out; returns bytes. */
static int decode_field(const char *s, unsigned char *out)
{
    char padded[128];
    size_t len = strcspn(s, "$");
    memcpy(padded, s, len);
    size_t pad = (4 - len % 4) % 4;
    memset(padded + len, '=', pad);
    padded[len + pad] = '\0';
    int n = EVP_DecodeBlock(out, (const unsigned char *)padded, (int)(len + pad));
    return n - (int)pad;
}

static void hash_is_plain_scrypt(void **state)
{
    (void)state;
    /* An independent scrypt over the salt in the string gives the hash in the string. */
    char enc[SIG_PASSWORD_HASH_MAX];
    assert_int_equal(sig_password_hash(PASSWORD, enc, sizeof(enc)), 0);
    const char *salt_b64 = enc + strlen("scrypt$16384$8$1$");
    const char *hash_b64 = strchr(salt_b64, '$') + 1;
    unsigned char salt[64], want[64], got[32];
    assert_int_equal(decode_field(salt_b64, salt), 16);
    assert_int_equal(decode_field(hash_b64, want), 32);
    assert_int_equal(EVP_PBE_scrypt(PASSWORD, strlen(PASSWORD), salt, 16, 16384, 8, 1, 0, got, 32),
                     1);
    assert_memory_equal(got, want, 32);

    /* And the parameters are read from the string: a cheaper hash made elsewhere verifies. */
    char salt_text[32], key_text[64], other[SIG_PASSWORD_HASH_MAX];
    memcpy(salt_text, salt_b64, 22);
    salt_text[22] = '\0';
    assert_int_equal(EVP_PBE_scrypt(PASSWORD, strlen(PASSWORD), salt, 16, 1024, 2, 3, 0, got, 32),
                     1);
    unsigned char b64[64];
    EVP_EncodeBlock(b64, got, 32);
    snprintf(key_text, sizeof(key_text), "%.43s", (const char *)b64); /* drop the "=" */
    snprintf(other, sizeof(other), "scrypt$1024$2$3$%s$%s", salt_text, key_text);
    assert_true(sig_password_verify(PASSWORD, other));
    other[strlen("scrypt$1024$2$")] = '2'; /* p = 2: a different key */
    assert_false(sig_password_verify(PASSWORD, other));
}

static void tampered_hash_is_refused(void **state)
{
    (void)state;
    char enc[SIG_PASSWORD_HASH_MAX], bad[SIG_PASSWORD_HASH_MAX + 8];
    assert_int_equal(sig_password_hash(PASSWORD, enc, sizeof(enc)), 0);
    size_t len = strlen(enc);
    const char *salt = enc + strlen("scrypt$16384$8$1$");
    size_t salt_at = (size_t)(salt - enc), hash_at = (size_t)(strchr(salt, '$') - enc) + 1;

    /* One character of the hash, then of the salt, changed. */
    size_t spots[] = {hash_at, len - 2, salt_at, salt_at + 5};
    for (size_t i = 0; i < sizeof(spots) / sizeof(spots[0]); i++) {
        strcpy(bad, enc);
        bad[spots[i]] = bad[spots[i]] == 'A' ? 'B' : 'A';
        assert_false(sig_password_verify(PASSWORD, bad));
    }
    /* Cut short, extended, a field dropped or added, other algorithm, bad characters. */
    snprintf(bad, sizeof(bad), "%.*s", (int)(len - 1), enc);
    assert_false(sig_password_verify(PASSWORD, bad));
    snprintf(bad, sizeof(bad), "%sAAAA", enc);
    assert_false(sig_password_verify(PASSWORD, bad));
    snprintf(bad, sizeof(bad), "%.*s", (int)(hash_at - 1), enc);
    assert_false(sig_password_verify(PASSWORD, bad));
    snprintf(bad, sizeof(bad), "%s$AAAA", enc);
    assert_false(sig_password_verify(PASSWORD, bad));
    snprintf(bad, sizeof(bad), "bcrypt%s", enc + 6);
    assert_false(sig_password_verify(PASSWORD, bad));
    strcpy(bad, enc);
    bad[hash_at + 3] = '*';
    assert_false(sig_password_verify(PASSWORD, bad));
    strcpy(bad, enc);
    bad[len - 1] = '='; /* padding is not our form */
    assert_false(sig_password_verify(PASSWORD, bad));
    /* The last character of a 32-byte hash carries 4 bits; other low bits make it non-canonical. */
    strcpy(bad, enc);
    const char *b64 = "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789+/";
    int v = (int)(strchr(b64, bad[len - 1]) - b64);
    bad[len - 1] = b64[v | 1];
    assert_false(sig_password_verify(PASSWORD, bad));

    const char *malformed[] = {
        "",
        "scrypt",
        "scrypt$",
        "scrypt$$$$$",
        "scrypt$16384$8$1$$",
        "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$",
        "scrypt$016384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$+16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$-16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$16384 $8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
        "scrypt$16384$8$1$AAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA", /* 3-byte salt */
        "scrypt$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAA",                  /* 6-byte hash */
        "SCRYPT$16384$8$1$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
    };
    for (size_t i = 0; i < sizeof(malformed) / sizeof(malformed[0]); i++)
        if (sig_password_verify(PASSWORD, malformed[i]))
            fail_msg("accepted \"%s\"", malformed[i]);
}

static void absurd_parameters_are_refused(void **state)
{
    (void)state;
    static const char *const params[] = {
        "1073741824$8$1", /* N = 2^30: 128 GiB */
        "2097152$1$1",    /* N = 2^21: over the N bound */
        "1048576$8$1",    /* N = 2^20, r = 8: 1 GiB */
        "16383$8$1",      /* N not a power of two */
        "0$8$1",
        "1$8$1",
        "2$8$1",
        "512$8$1", /* too cheap to be ours */
        "16384$0$1",
        "16384$33$1",
        "16384$4294967297$1",
        "16384$8$0",
        "16384$8$17",
        "16384$8$4294967295",
        "16384$32$16", /* work 2^23: 64 times ours */
        "99999999999999999999$8$1",
        "18446744073709551616$8$1",
    };
    for (size_t i = 0; i < sizeof(params) / sizeof(params[0]); i++) {
        char enc[256];
        snprintf(enc, sizeof(enc),
                 "scrypt$%s$AAAAAAAAAAAAAAAAAAAAAA$AAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAAA",
                 params[i]);
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        if (sig_password_verify(PASSWORD, enc))
            fail_msg("accepted \"%s\"", enc);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        /* Refused before any work is done: the worst of these would take seconds. The
         * bound is loose so that a loaded machine does not fail the test. */
        if (elapsed_ms(&t0, &t1) > 500)
            fail_msg("\"%s\" took %.1f ms to refuse", params[i], elapsed_ms(&t0, &t1));
    }
}

static void random_tokens(void **state)
{
    (void)state;
    char a[SIG_TOKEN_CHARS + 1], b[SIG_TOKEN_CHARS + 1];
    assert_int_equal(sig_random_token(a), 0);
    assert_int_equal(sig_random_token(b), 0);
    assert_int_equal(strlen(a), SIG_TOKEN_CHARS);
    assert_int_equal(strspn(a, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz0123456789-_"),
                     SIG_TOKEN_CHARS);
    assert_string_not_equal(a, b);
}

/* ------------------------------------------------------------------------- */
/* Accounts                                                                   */
/* ------------------------------------------------------------------------- */

static void names_are_checked(void **state)
{
    (void)state;
    char max[64];
    memset(max, 'a', 63);
    max[63] = '\0';
    assert_true(sig_username_valid("dr.amina"));
    assert_true(sig_username_valid("a"));
    assert_true(sig_username_valid("x_y-z.0"));
    assert_true(sig_username_valid(max));
    assert_true(sig_clinic_id_valid(max));
    assert_true(sig_clinic_id_valid("north-2_b"));
    const char *bad_names[] = {"", "Amina", "a b", "a\n", "a/b", "\xd8\xa3", "a@b", "a:b"};
    for (size_t i = 0; i < sizeof(bad_names) / sizeof(bad_names[0]); i++)
        assert_false(sig_username_valid(bad_names[i]));
    assert_false(sig_username_valid(NULL));
    assert_false(sig_clinic_id_valid("a.b"));
    assert_false(sig_clinic_id_valid("North"));
    assert_false(sig_clinic_id_valid(""));
    assert_false(sig_clinic_id_valid(NULL));
    char too_long[65];
    memset(too_long, 'a', 64);
    too_long[64] = '\0';
    assert_false(sig_username_valid(too_long));
    assert_false(sig_clinic_id_valid(too_long));

    assert_string_equal(sig_role_name(SIG_ROLE_PATIENT), "patient");
    assert_string_equal(sig_role_name(SIG_ROLE_DOCTOR), "doctor");
    assert_string_equal(sig_role_name(SIG_ROLE_ADMIN), "admin");
    assert_string_equal(sig_role_name(SIG_ROLE_NONE), "none");
    assert_string_equal(sig_role_name((enum sig_role)42), "none");
}

struct names {
    char list[8][SIG_USERNAME_MAX];
    int n;
};

static void collect_name(const struct sig_user *u, void *arg)
{
    struct names *names = arg;
    if (names->n < 8)
        strcpy(names->list[names->n++], u->username);
}

static void add_get_list(void **state)
{
    struct fixture *f = *state;
    assert_int_equal(sig_accounts_count(f->acc), 0);
    add(f, "dr.zaid", SIG_ROLE_DOCTOR, "south,north", PASSWORD);
    add(f, "boss", SIG_ROLE_ADMIN, NULL, PASSWORD);
    add(f, "north-admin", SIG_ROLE_ADMIN, "north", PASSWORD);
    assert_int_equal(sig_accounts_count(f->acc), 3);

    struct sig_user u;
    assert_int_equal(sig_accounts_get(f->acc, "dr.zaid", &u), 0);
    assert_true(u.id > 0);
    assert_string_equal(u.username, "dr.zaid");
    assert_int_equal(u.role, SIG_ROLE_DOCTOR);
    assert_false(u.disabled);
    assert_false(u.all_clinics);
    assert_int_equal(u.clinic_count, 2);
    assert_string_equal(u.clinics[0], "north"); /* sorted */
    assert_string_equal(u.clinics[1], "south");
    assert_true(sig_user_has_clinic(&u, "north"));
    assert_true(sig_user_has_clinic(&u, "south"));
    assert_false(sig_user_has_clinic(&u, "east"));
    assert_false(sig_user_has_clinic(&u, "North"));
    assert_false(sig_user_has_clinic(&u, NULL));

    assert_int_equal(sig_accounts_get(f->acc, "boss", &u), 0);
    assert_int_equal(u.role, SIG_ROLE_ADMIN);
    assert_true(u.all_clinics);
    assert_int_equal(u.clinic_count, 0);
    assert_true(sig_user_has_clinic(&u, "anywhere"));
    assert_false(sig_user_has_clinic(&u, "not valid"));
    u.disabled = true;
    assert_false(sig_user_has_clinic(&u, "anywhere"));
    u.disabled = false;
    u.role = SIG_ROLE_DOCTOR; /* "every clinic" is an admin's right only */
    assert_false(sig_user_has_clinic(&u, "anywhere"));

    assert_int_equal(sig_accounts_get(f->acc, "north-admin", &u), 0);
    assert_false(u.all_clinics);
    assert_true(sig_user_has_clinic(&u, "north"));
    assert_false(sig_user_has_clinic(&u, "south"));

    assert_int_equal(sig_accounts_get(f->acc, "nobody", &u), -ENOENT);
    assert_int_equal(sig_accounts_get(f->acc, "Not Valid", &u), -ENOENT);

    struct names names = {0};
    assert_int_equal(sig_accounts_list(f->acc, collect_name, &names), 0);
    assert_int_equal(names.n, 3);
    assert_string_equal(names.list[0], "boss");
    assert_string_equal(names.list[1], "dr.zaid");
    assert_string_equal(names.list[2], "north-admin");

    /* Still there after closing and opening again. */
    sig_accounts_close(f->acc);
    char err[256];
    f->acc = sig_accounts_open(f->data, err, sizeof(err));
    assert_non_null(f->acc);
    assert_int_equal(sig_accounts_count(f->acc), 3);
    assert_int_equal(sig_accounts_get(f->acc, "dr.zaid", &u), 0);
    assert_int_equal(u.clinic_count, 2);
}

/* Expects add_user to fail with `want` and an error message containing `words`. */
static void expect_add_error(struct fixture *f, const char *name, enum sig_role role,
                             const char *const *clinics, unsigned n, bool all, const char *password,
                             int want, const char *words)
{
    char err[256] = "";
    int rc = sig_accounts_add_user(f->acc, name, role, clinics, n, all, password, err, sizeof(err));
    if (rc != want || !strstr(err, words))
        fail_msg("add \"%s\": got %d \"%s\", wanted %d \"...%s...\"", name ? name : "(null)", rc,
                 err, want, words);
}

static void duplicate_and_invalid_accounts(void **state)
{
    struct fixture *f = *state;
    const char *north[] = {"north"};
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    expect_add_error(f, "dr.amina", SIG_ROLE_DOCTOR, north, 1, false, PASSWORD, -EEXIST,
                     "\"dr.amina\" already exists");
    expect_add_error(f, "dr.amina", SIG_ROLE_ADMIN, NULL, 0, true, PASSWORD, -EEXIST,
                     "already exists");

    expect_add_error(f, "", SIG_ROLE_DOCTOR, north, 1, false, PASSWORD, -EINVAL,
                     "invalid username \"\"");
    expect_add_error(f, NULL, SIG_ROLE_DOCTOR, north, 1, false, PASSWORD, -EINVAL,
                     "invalid username");
    expect_add_error(f, "Dr Amina", SIG_ROLE_DOCTOR, north, 1, false, PASSWORD, -EINVAL,
                     "invalid username \"Dr Amina\": use 1 to 63 characters");
    expect_add_error(f, "evil\x1b[2J", SIG_ROLE_DOCTOR, north, 1, false, PASSWORD, -EINVAL,
                     "\"evil?[2J\""); /* no terminal escapes echoed back */
    char long_name[80];
    memset(long_name, 'a', 64);
    long_name[64] = '\0';
    expect_add_error(f, long_name, SIG_ROLE_DOCTOR, north, 1, false, PASSWORD, -EINVAL,
                     "invalid username");

    expect_add_error(f, "p", SIG_ROLE_PATIENT, north, 1, false, PASSWORD, -EINVAL,
                     "invalid role \"patient\"");
    expect_add_error(f, "p", SIG_ROLE_NONE, north, 1, false, PASSWORD, -EINVAL, "invalid role");
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, NULL, 0, false, PASSWORD, -EINVAL,
                     "a doctor needs at least one clinic");
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, NULL, 0, true, PASSWORD, -EINVAL,
                     "only an admin can have every clinic");
    expect_add_error(f, "a", SIG_ROLE_ADMIN, north, 1, true, PASSWORD, -EINVAL, "not both");
    expect_add_error(f, "a", SIG_ROLE_ADMIN, NULL, 0, false, PASSWORD, -EINVAL,
                     "an admin needs a list of clinics or every clinic");
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, NULL, 2, false, PASSWORD, -EINVAL, "missing");
    const char *bad_clinic[] = {"north", "South"};
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, bad_clinic, 2, false, PASSWORD, -EINVAL,
                     "invalid clinic id \"South\"");
    const char *dotted[] = {"a.b"};
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, dotted, 1, false, PASSWORD, -EINVAL,
                     "invalid clinic id \"a.b\"");
    const char *twice[] = {"north", "south", "north"};
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, twice, 3, false, PASSWORD, -EINVAL,
                     "\"north\" is listed twice");
    const char *many[SIG_USER_CLINIC_MAX + 1];
    char many_ids[SIG_USER_CLINIC_MAX + 1][8];
    for (int i = 0; i <= SIG_USER_CLINIC_MAX; i++) {
        snprintf(many_ids[i], sizeof(many_ids[i]), "c%d", i);
        many[i] = many_ids[i];
    }
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, many, SIG_USER_CLINIC_MAX + 1, false, PASSWORD,
                     -EINVAL, "too many clinics");
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, north, 1, false, "short", -EINVAL,
                     "too short: at least 10 bytes");
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, north, 1, false, NULL, -EINVAL, "too short");
    char long_pw[SIG_PASSWORD_MAX + 2];
    memset(long_pw, 'x', SIG_PASSWORD_MAX + 1);
    long_pw[SIG_PASSWORD_MAX + 1] = '\0';
    expect_add_error(f, "d", SIG_ROLE_DOCTOR, north, 1, false, long_pw, -EINVAL, "too long");

    /* The limits themselves are fine. */
    char name63[64];
    memset(name63, 'n', 63);
    name63[63] = '\0';
    char err[256];
    assert_int_equal(sig_accounts_add_user(f->acc, name63, SIG_ROLE_DOCTOR, many,
                                           SIG_USER_CLINIC_MAX, false, "0123456789", err,
                                           sizeof(err)),
                     0);
    struct sig_user u;
    assert_int_equal(sig_accounts_get(f->acc, name63, &u), 0);
    assert_int_equal(u.clinic_count, SIG_USER_CLINIC_MAX);
    assert_int_equal(sig_accounts_count(f->acc), 2);
}

/* ------------------------------------------------------------------------- */
/* Sign-in and sessions                                                       */
/* ------------------------------------------------------------------------- */

static void login_outcomes(void **state)
{
    struct fixture *f = *state;
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    char token[SIG_TOKEN_CHARS + 1];
    struct sig_user u;
    memset(&u, 0, sizeof(u));
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, token, &u),
                     SIG_LOGIN_OK);
    assert_int_equal(strlen(token), SIG_TOKEN_CHARS);
    assert_string_equal(u.username, "dr.amina");
    assert_int_equal(u.role, SIG_ROLE_DOCTOR);
    assert_int_equal(u.clinic_count, 1);

    assert_int_equal(
        sig_accounts_login(f->acc, "dr.amina", "wrong password", NOW, HOUR_MS, token, &u),
        SIG_LOGIN_BAD_CREDENTIALS);
    assert_string_equal(token, "");
    assert_int_equal(sig_accounts_login(f->acc, "dr.nobody", PASSWORD, NOW, HOUR_MS, token, &u),
                     SIG_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(sig_accounts_login(f->acc, "Not A Name", PASSWORD, NOW, HOUR_MS, token, &u),
                     SIG_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(sig_accounts_login(f->acc, NULL, PASSWORD, NOW, HOUR_MS, token, &u),
                     SIG_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", NULL, NOW, HOUR_MS, token, &u),
                     SIG_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, 0, token, &u),
                     SIG_LOGIN_ERROR);
    assert_int_equal(
        sig_accounts_login(f->acc, "dr.amina", PASSWORD, INT64_MAX, HOUR_MS, token, &u),
        SIG_LOGIN_ERROR);
    /* user_out is optional. */
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, token, NULL),
                     SIG_LOGIN_OK);

    assert_int_equal(sig_accounts_disable(f->acc, "dr.amina"), 0);
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, token, &u),
                     SIG_LOGIN_DISABLED);
    assert_string_equal(token, "");
    /* "Disabled" is told only to someone who knows the password. */
    assert_int_equal(
        sig_accounts_login(f->acc, "dr.amina", "wrong password", NOW, HOUR_MS, token, &u),
        SIG_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(sig_accounts_disable(f->acc, "dr.amina"), 0); /* again: no harm */
    assert_int_equal(sig_accounts_disable(f->acc, "dr.nobody"), -ENOENT);
    assert_int_equal(sig_accounts_disable(f->acc, "Not Valid"), -ENOENT);
}

static void sessions(void **state)
{
    struct fixture *f = *state;
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    add(f, "dr.zaid", SIG_ROLE_DOCTOR, "south", PASSWORD);
    char t1[SIG_TOKEN_CHARS + 1], t2[SIG_TOKEN_CHARS + 1], tz[SIG_TOKEN_CHARS + 1];
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, t1, NULL),
                     SIG_LOGIN_OK);
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, t2, NULL),
                     SIG_LOGIN_OK);
    assert_int_equal(sig_accounts_login(f->acc, "dr.zaid", PASSWORD, NOW, HOUR_MS, tz, NULL),
                     SIG_LOGIN_OK);
    assert_string_not_equal(t1, t2);

    struct sig_user u;
    assert_int_equal(sig_accounts_session(f->acc, t1, NOW + 1000, &u), 0);
    assert_string_equal(u.username, "dr.amina");
    assert_string_equal(u.clinics[0], "north");
    assert_int_equal(sig_accounts_session(f->acc, t1, NOW + HOUR_MS - 1, NULL), 0);
    /* Expired at expires_ms exactly. */
    assert_int_equal(sig_accounts_session(f->acc, t1, NOW + HOUR_MS, &u), -ENOENT);
    assert_int_equal(sig_accounts_session(f->acc, t1, NOW + 2 * HOUR_MS, &u), -ENOENT);

    /* Unknown, malformed, NULL. */
    char other[SIG_TOKEN_CHARS + 1];
    sig_random_token(other);
    assert_int_equal(sig_accounts_session(f->acc, other, NOW, &u), -ENOENT);
    assert_int_equal(sig_accounts_session(f->acc, "", NOW, &u), -ENOENT);
    assert_int_equal(sig_accounts_session(f->acc, NULL, NOW, &u), -ENOENT);
    char longer[SIG_TOKEN_CHARS + 2];
    snprintf(longer, sizeof(longer), "%sA", t1);
    assert_int_equal(sig_accounts_session(f->acc, longer, NOW, &u), -ENOENT);
    char shorter[SIG_TOKEN_CHARS];
    memcpy(shorter, t1, SIG_TOKEN_CHARS - 1);
    shorter[SIG_TOKEN_CHARS - 1] = '\0';
    assert_int_equal(sig_accounts_session(f->acc, shorter, NOW, &u), -ENOENT);

    /* Logout ends one session, once. */
    assert_int_equal(sig_accounts_logout(f->acc, t1), 0);
    assert_int_equal(sig_accounts_session(f->acc, t1, NOW, &u), -ENOENT);
    assert_int_equal(sig_accounts_logout(f->acc, t1), -ENOENT);
    assert_int_equal(sig_accounts_logout(f->acc, "garbage"), -ENOENT);
    assert_int_equal(sig_accounts_session(f->acc, t2, NOW, &u), 0);

    /* A new password ends every session of that account, and only that account. */
    char err[256];
    assert_int_equal(
        sig_accounts_set_password(f->acc, "dr.amina", "a new password", err, sizeof(err)), 0);
    assert_int_equal(sig_accounts_session(f->acc, t2, NOW, &u), -ENOENT);
    assert_int_equal(sig_accounts_session(f->acc, tz, NOW, &u), 0);
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, t1, NULL),
                     SIG_LOGIN_BAD_CREDENTIALS);
    assert_int_equal(
        sig_accounts_login(f->acc, "dr.amina", "a new password", NOW, HOUR_MS, t1, NULL),
        SIG_LOGIN_OK);
    assert_int_equal(sig_accounts_session(f->acc, t1, NOW, &u), 0);

    /* Disabling ends them too. */
    assert_int_equal(sig_accounts_disable(f->acc, "dr.amina"), 0);
    assert_int_equal(sig_accounts_session(f->acc, t1, NOW, &u), -ENOENT);
    assert_int_equal(sig_accounts_session(f->acc, tz, NOW, &u), 0);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM sessions"), 1); /* dr.zaid's */

    /* set_password's own errors. */
    assert_int_equal(sig_accounts_set_password(f->acc, "dr.nobody", PASSWORD, err, sizeof(err)),
                     -ENOENT);
    assert_non_null(strstr(err, "no user \"dr.nobody\""));
    assert_int_equal(sig_accounts_set_password(f->acc, "dr.zaid", "short", err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "too short"));
    assert_int_equal(sig_accounts_set_password(f->acc, "Bad Name", PASSWORD, err, sizeof(err)),
                     -EINVAL);
    assert_non_null(strstr(err, "invalid username"));
    assert_int_equal(sig_accounts_session(f->acc, tz, NOW, &u), 0);
}

static void secrets_are_not_stored(void **state)
{
    struct fixture *f = *state;
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    char token[SIG_TOKEN_CHARS + 1], appt_token[SIG_TOKEN_CHARS + 1];
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, token, NULL),
                     SIG_LOGIN_OK);
    struct sig_user u;
    sig_accounts_get(f->acc, "dr.amina", &u);
    struct sig_appointment appt = {
        .clinic = "north", .issued_by = u.id, .expires_ms = NOW + HOUR_MS};
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &appt, appt_token), 0);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    const char *files[] = {f->db, wal};
    for (size_t i = 0; i < 2; i++) {
        assert_false(file_contains(files[i], PASSWORD));
        assert_false(file_contains(files[i], token));
        assert_false(file_contains(files[i], appt_token));
    }
    assert_true(file_contains(wal, "dr.amina")); /* the scan does see what is there */
}

/* The fastest of three sign-ins, in milliseconds. */
static double best_login_ms(struct fixture *f, const char *name, const char *password,
                            enum sig_login_result want)
{
    double best = 1e9;
    char token[SIG_TOKEN_CHARS + 1];
    for (int i = 0; i < 3; i++) {
        struct timespec t0, t1;
        clock_gettime(CLOCK_MONOTONIC, &t0);
        assert_int_equal(sig_accounts_login(f->acc, name, password, NOW, HOUR_MS, token, NULL),
                         want);
        clock_gettime(CLOCK_MONOTONIC, &t1);
        if (elapsed_ms(&t0, &t1) < best)
            best = elapsed_ms(&t0, &t1);
    }
    return best;
}

static void unknown_user_costs_one_scrypt(void **state)
{
    struct fixture *f = *state;
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    double ok = best_login_ms(f, "dr.amina", PASSWORD, SIG_LOGIN_OK);
    double wrong = best_login_ms(f, "dr.amina", "wrong password", SIG_LOGIN_BAD_CREDENTIALS);
    double unknown = best_login_ms(f, "dr.nobody", PASSWORD, SIG_LOGIN_BAD_CREDENTIALS);
    double invalid = best_login_ms(f, "Not Valid", PASSWORD, SIG_LOGIN_BAD_CREDENTIALS);
    print_message("login: ok %.1f ms, wrong password %.1f ms, unknown user %.1f ms, "
                  "invalid name %.1f ms\n",
                  ok, wrong, unknown, invalid);
    /*
     * Without the dummy scrypt an unknown or invalid name would take well under 1 ms;
     * one scrypt (N=16384) takes tens of ms. Only a lower bound: load can only slow
     * things down, so this cannot fail on a busy machine.
     */
    assert_true(unknown > 10.0 && invalid > 10.0);
}

/* ------------------------------------------------------------------------- */
/* Appointments                                                               */
/* ------------------------------------------------------------------------- */

static int64_t user_id(struct fixture *f, const char *name)
{
    struct sig_user u;
    assert_int_equal(sig_accounts_get(f->acc, name, &u), 0);
    return u.id;
}

static void appointments(void **state)
{
    struct fixture *f = *state;
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    struct sig_appointment appt = {.clinic = "north",
                                   .patient_ref = "MRN 0042 / bed 4",
                                   .priority = 1,
                                   .issued_by = user_id(f, "dr.amina"),
                                   .expires_ms = NOW + HOUR_MS};
    char token[SIG_TOKEN_CHARS + 1], plain[SIG_TOKEN_CHARS + 1];
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &appt, token), 0);
    assert_int_equal(strlen(token), SIG_TOKEN_CHARS);
    struct sig_appointment no_ref = {
        .clinic = "north", .issued_by = appt.issued_by, .expires_ms = NOW + HOUR_MS};
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &no_ref, plain), 0);

    struct sig_appointment got;
    memset(&got, 0x55, sizeof(got));
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, token, NOW, NULL, &got), 0);
    assert_string_equal(got.clinic, "north");
    assert_string_equal(got.patient_ref, "MRN 0042 / bed 4");
    assert_int_equal(got.priority, 1);
    assert_int_equal(got.issued_by, appt.issued_by);
    assert_int_equal(got.expires_ms, NOW + HOUR_MS);
    /* Once only. */
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, token, NOW, NULL, &got), -ENOENT);
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, token, NOW + 1, NULL, &got), -ENOENT);

    /* Expired at expires_ms exactly, and stays unusable. */
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, plain, NOW + HOUR_MS, NULL, &got),
                     -ENOENT);
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, plain, NOW + HOUR_MS - 1, NULL, &got),
                     0);
    assert_string_equal(got.patient_ref, "");
    assert_int_equal(got.priority, 0);

    /* Unknown and malformed tokens. */
    char other[SIG_TOKEN_CHARS + 1];
    sig_random_token(other);
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, other, NOW, NULL, &got), -ENOENT);
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, "x", NOW, NULL, &got), -ENOENT);
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, NULL, NOW, NULL, &got), -ENOENT);
    /* A session token is not an appointment, nor the other way round. */
    char session[SIG_TOKEN_CHARS + 1];
    assert_int_equal(sig_accounts_login(f->acc, "dr.amina", PASSWORD, NOW, HOUR_MS, session, NULL),
                     SIG_LOGIN_OK);
    assert_int_equal(sig_accounts_redeem_appointment(f->acc, session, NOW, NULL, &got), -ENOENT);
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &no_ref, plain), 0);
    assert_int_equal(sig_accounts_session(f->acc, plain, NOW, NULL), -ENOENT);

    /* Bad fields. */
    struct sig_appointment bad = appt;
    strcpy(bad.clinic, "North");
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &bad, other), -EINVAL);
    assert_string_equal(other, "");
    bad = appt;
    strcpy(bad.patient_ref, "line\nbreak");
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &bad, other), -EINVAL);
    bad = appt;
    memset(bad.patient_ref, 'r', sizeof(bad.patient_ref)); /* no NUL */
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &bad, other), -EINVAL);
    bad = appt;
    bad.priority = 2;
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &bad, other), -EINVAL);
    bad = appt;
    bad.issued_by = 999;
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &bad, other), -EINVAL);
    bad = appt;
    bad.expires_ms = 0;
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &bad, other), -EINVAL);
    assert_int_equal(query_int(f->db, "SELECT count(*) FROM appointments"), 3);
    assert_int_equal(
        query_int(f->db, "SELECT count(*) FROM appointments WHERE redeemed_ms IS NOT NULL"), 2);
}

#define REDEEMERS 4

struct redeemer {
    const char *data_dir;
    const char *token;
    int rc;
};

static void *redeem_in_thread(void *arg)
{
    struct redeemer *r = arg;
    char err[256];
    struct sig_accounts *acc = sig_accounts_open(r->data_dir, err, sizeof(err));
    struct sig_appointment got;
    r->rc = acc ? sig_accounts_redeem_appointment(acc, r->token, NOW, NULL, &got) : -EIO;
    sig_accounts_close(acc);
    return NULL;
}

static void concurrent_redeem_succeeds_once(void **state)
{
    struct fixture *f = *state;
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    struct sig_appointment appt = {
        .clinic = "north", .issued_by = user_id(f, "dr.amina"), .expires_ms = NOW + HOUR_MS};
    char token[SIG_TOKEN_CHARS + 1];
    assert_int_equal(sig_accounts_issue_appointment(f->acc, &appt, token), 0);
    /* Each thread with its own connection, as two processes would be. */
    pthread_t t[REDEEMERS];
    struct redeemer r[REDEEMERS];
    for (int i = 0; i < REDEEMERS; i++) {
        r[i] = (struct redeemer){.data_dir = f->data, .token = token};
        pthread_create(&t[i], NULL, redeem_in_thread, &r[i]);
    }
    int won = 0;
    for (int i = 0; i < REDEEMERS; i++) {
        pthread_join(t[i], NULL);
        if (r[i].rc == 0)
            won++;
        else
            assert_int_equal(r[i].rc, -ENOENT);
    }
    assert_int_equal(won, 1);
}

/* ------------------------------------------------------------------------- */
/* First admin, files, schema                                                 */
/* ------------------------------------------------------------------------- */

static void first_admin_is_created_once(void **state)
{
    struct fixture *f = *state;
    char password[32], again[64];
    assert_int_equal(sig_accounts_ensure_first_admin(f->acc, password, 31), -EINVAL);
    assert_int_equal(sig_accounts_count(f->acc), 0);
    assert_int_equal(sig_accounts_ensure_first_admin(f->acc, password, sizeof(password)), 1);
    assert_true(strlen(password) >= 20);
    assert_true(strlen(password) < sizeof(password));
    assert_int_equal(strspn(password, "ABCDEFGHIJKLMNOPQRSTUVWXYZabcdefghijklmnopqrstuvwxyz"
                                      "0123456789"),
                     strlen(password));
    assert_int_equal(sig_accounts_count(f->acc), 1);

    struct sig_user u;
    char token[SIG_TOKEN_CHARS + 1];
    assert_int_equal(sig_accounts_login(f->acc, "admin", password, NOW, HOUR_MS, token, &u),
                     SIG_LOGIN_OK);
    assert_int_equal(u.role, SIG_ROLE_ADMIN);
    assert_true(u.all_clinics);
    assert_true(sig_user_has_clinic(&u, "any-clinic"));

    assert_int_equal(sig_accounts_ensure_first_admin(f->acc, again, sizeof(again)), 0);
    assert_string_equal(again, "");
    assert_int_equal(sig_accounts_count(f->acc), 1);

    /* Disabled accounts count: a store whose only admin is disabled gets no new one. */
    assert_int_equal(sig_accounts_disable(f->acc, "admin"), 0);
    assert_int_equal(sig_accounts_ensure_first_admin(f->acc, again, sizeof(again)), 0);
    assert_int_equal(sig_accounts_count(f->acc), 1);
}

static void first_admin_not_made_beside_other_accounts(void **state)
{
    struct fixture *f = *state;
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD);
    char password[32];
    assert_int_equal(sig_accounts_ensure_first_admin(f->acc, password, sizeof(password)), 0);
    struct sig_user u;
    assert_int_equal(sig_accounts_get(f->acc, "admin", &u), -ENOENT);
}

static void files_are_private(void **state)
{
    struct fixture *f = *state;
    /* Whatever the umask, the data dir is 0700 when we make it and the database 0600. */
    mode_t old = umask(0);
    char err[256];
    f->acc = sig_accounts_open(f->data, err, sizeof(err));
    umask(old);
    assert_non_null(f->acc);
    add(f, "dr.amina", SIG_ROLE_DOCTOR, "north", PASSWORD); /* so the WAL exists */
    struct stat st;
    assert_int_equal(stat(f->data, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0700);
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    char wal[160];
    snprintf(wal, sizeof(wal), "%s-wal", f->db);
    assert_int_equal(stat(wal, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    assert_int_equal(query_int(f->db, "PRAGMA user_version"), 1);
    sig_accounts_close(f->acc);
    f->acc = NULL;

    /* A umask that would drop the owner's write bit, on a new file. */
    assert_int_equal(unlink(f->db), 0);
    unlink(wal);
    char shm[160];
    snprintf(shm, sizeof(shm), "%s-shm", f->db);
    unlink(shm);
    old = umask(0277);
    f->acc = sig_accounts_open(f->data, err, sizeof(err));
    umask(old);
    assert_non_null(f->acc);
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);
    sig_accounts_close(f->acc);
    f->acc = NULL;

    /* An existing file open to others is made private. */
    assert_int_equal(chmod(f->db, 0644), 0);
    f->acc = sig_accounts_open(f->data, err, sizeof(err));
    assert_non_null(f->acc);
    assert_int_equal(stat(f->db, &st), 0);
    assert_int_equal(st.st_mode & 07777, 0600);

    /* WAL mode, checked from another connection. */
    sqlite3 *db;
    assert_int_equal(sqlite3_open_v2(f->db, &db, SQLITE_OPEN_READONLY, NULL), SQLITE_OK);
    sqlite3_stmt *q;
    assert_int_equal(sqlite3_prepare_v2(db, "PRAGMA journal_mode", -1, &q, NULL), SQLITE_OK);
    assert_int_equal(sqlite3_step(q), SQLITE_ROW);
    assert_string_equal((const char *)sqlite3_column_text(q, 0), "wal");
    sqlite3_finalize(q);
    sqlite3_close(db);
}

static void bad_places_are_reported(void **state)
{
    struct fixture *f = *state;
    char err[256];
    assert_null(sig_accounts_open("/proc/no-such-dir/tabib", err, sizeof(err)));
    assert_non_null(strstr(err, "data_dir: cannot create"));
    /* accounts.db is a directory. */
    assert_int_equal(mkdir(f->data, 0700), 0);
    assert_int_equal(mkdir(f->db, 0700), 0);
    assert_null(sig_accounts_open(f->data, err, sizeof(err)));
    assert_non_null(strstr(err, "accounts.db"));
    assert_int_equal(rmdir(f->db), 0);
    /* A symlink in its place is not followed. */
    char target[160];
    snprintf(target, sizeof(target), "%s/elsewhere.db", f->dir);
    assert_int_equal(symlink(target, f->db), 0);
    assert_null(sig_accounts_open(f->data, err, sizeof(err)));
    assert_int_equal(access(target, F_OK), -1);
    sig_accounts_close(NULL);
}

static void newer_schema_is_refused(void **state)
{
    struct fixture *f = *state;
    sig_accounts_close(f->acc);
    f->acc = NULL;
    sqlite3 *db;
    assert_int_equal(sqlite3_open(f->db, &db), SQLITE_OK);
    assert_int_equal(sqlite3_exec(db, "PRAGMA user_version = 99", NULL, NULL, NULL), SQLITE_OK);
    sqlite3_close(db);
    char err[256];
    assert_null(sig_accounts_open(f->data, err, sizeof(err)));
    assert_non_null(strstr(err, "schema version 99, newer than this build's 1"));
}

/* ------------------------------------------------------------------------- */
/* tabib user                                                                 */
/* ------------------------------------------------------------------------- */

/*
 * Runs `tabib user ARGS...` (args NULL-terminated) with `data_dir` as the
 * default; keeps what it printed in f->out and f->err. Returns its status.
 */
static int run_user_argv(struct fixture *f, const char *data_dir, const char *const *args)
{
    char *argv[32] = {"user"};
    int argc = 1;
    for (; args[argc - 1] && argc < 31; argc++)
        argv[argc] = (char *)args[argc - 1];
    free(f->out);
    free(f->err);
    FILE *out = open_memstream(&f->out, &f->out_len);
    FILE *err = open_memstream(&f->err, &f->err_len);
    int status = sig_user_command(argc, argv, data_dir, out, err);
    fclose(out);
    fclose(err);
    return status;
}

#define run_user(f, data_dir, ...) run_user_argv(f, data_dir, (const char *const[]){__VA_ARGS__})

/* As run_user_argv() with f->data, and `input` as standard input through a pipe. */
static int run_user_stdin(struct fixture *f, const char *input, const char *const *args)
{
    int p[2];
    assert_int_equal(pipe(p), 0);
    assert_int_equal(write(p[1], input, strlen(input)), (ssize_t)strlen(input));
    close(p[1]);
    int saved = dup(STDIN_FILENO);
    assert_true(saved >= 0);
    assert_int_equal(dup2(p[0], STDIN_FILENO), STDIN_FILENO);
    close(p[0]);
    int status = run_user_argv(f, f->data, args);
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);
    return status;
}

static bool can_login(struct fixture *f, const char *name, const char *password)
{
    char err[256], token[SIG_TOKEN_CHARS + 1];
    struct sig_accounts *acc = sig_accounts_open(f->data, err, sizeof(err));
    assert_non_null(acc);
    bool ok = sig_accounts_login(acc, name, password, NOW, HOUR_MS, token, NULL) == SIG_LOGIN_OK;
    sig_accounts_close(acc);
    return ok;
}

static void cli_add_list_disable_passwd(void **state)
{
    struct fixture *f = *state;
    char pw1[160], pw2[160], crlf[160];
    snprintf(pw1, sizeof(pw1), "%s/pw1", f->dir);
    snprintf(pw2, sizeof(pw2), "%s/pw2", f->dir);
    snprintf(crlf, sizeof(crlf), "%s/crlf", f->dir);
    write_file(pw1, "first password\nsecond line is ignored\n");
    write_file(pw2, "another password");
    write_file(crlf, "windows password\r\n");

    /* Options anywhere, --data-dir overriding the default, "--opt=value" too. */
    assert_int_equal(run_user(f, "/nonexistent/default", "add", "dr.amina", "--role", "doctor",
                              "--clinics", "south,north", "--password-file", pw1, "--data-dir",
                              f->data, NULL),
                     0);
    assert_string_equal(f->out, "added doctor \"dr.amina\" (clinics north,south)\n");
    assert_string_equal(f->err, "");
    assert_int_equal(run_user(f, NULL, "--data-dir", f->data, "add", "boss", "--role=admin",
                              "--password-file=", NULL),
                     2); /* an empty value */
    assert_int_equal(run_user(f, NULL, "--data-dir", f->data, "add", "boss", "--role=admin",
                              "--password-file", pw2, NULL),
                     0);
    assert_string_equal(f->out, "added admin \"boss\" (every clinic)\n");
    assert_int_equal(run_user(f, f->data, "add", "north-admin", "--role", "admin", "--clinics",
                              "north", "--password-file", crlf, NULL),
                     0);
    assert_int_equal(run_user(f, f->data, "add", "dr.zaid", "--role", "doctor", "--clinics", "east",
                              "--password-file", pw2, NULL),
                     0);

    assert_true(can_login(f, "dr.amina", "first password"));
    assert_false(can_login(f, "dr.amina", "first password\n"));
    assert_true(can_login(f, "boss", "another password"));
    assert_true(can_login(f, "north-admin", "windows password"));

    assert_int_equal(run_user(f, f->data, "list", NULL), 0);
    assert_string_equal(f->out, "USERNAME     ROLE    CLINICS      STATUS\n"
                                "boss         admin   all          enabled\n"
                                "dr.amina     doctor  north,south  enabled\n"
                                "dr.zaid      doctor  east         enabled\n"
                                "north-admin  admin   north        enabled\n");

    /* Disable ends the sessions. */
    char err[256], token[SIG_TOKEN_CHARS + 1];
    struct sig_accounts *acc = sig_accounts_open(f->data, err, sizeof(err));
    assert_int_equal(
        sig_accounts_login(acc, "dr.zaid", "another password", NOW, HOUR_MS, token, NULL),
        SIG_LOGIN_OK);
    assert_int_equal(run_user(f, f->data, "disable", "dr.zaid", NULL), 0);
    assert_string_equal(f->out, "disabled \"dr.zaid\"; its sessions are ended\n");
    assert_int_equal(sig_accounts_session(acc, token, NOW, NULL), -ENOENT);
    assert_int_equal(run_user(f, f->data, "list", NULL), 0);
    assert_non_null(strstr(f->out, "dr.zaid      doctor  east         disabled\n"));

    /* passwd replaces the password and ends the sessions. */
    assert_int_equal(
        sig_accounts_login(acc, "dr.amina", "first password", NOW, HOUR_MS, token, NULL),
        SIG_LOGIN_OK);
    assert_int_equal(run_user(f, f->data, "passwd", "dr.amina", "--password-file", pw2, NULL), 0);
    assert_string_equal(f->out, "changed the password of \"dr.amina\"; its sessions are ended\n");
    assert_int_equal(sig_accounts_session(acc, token, NOW, NULL), -ENOENT);
    sig_accounts_close(acc);
    assert_false(can_login(f, "dr.amina", "first password"));
    assert_true(can_login(f, "dr.amina", "another password"));

    /* Failures: exit status 1, a message, no usage text. */
    assert_int_equal(run_user(f, f->data, "add", "dr.amina", "--role", "doctor", "--clinics",
                              "north", "--password-file", pw1, NULL),
                     1);
    assert_string_equal(f->err, "tabib user: user \"dr.amina\" already exists\n");
    assert_int_equal(run_user(f, f->data, "disable", "dr.nobody", NULL), 1);
    assert_string_equal(f->err, "tabib user: no user \"dr.nobody\"\n");
    assert_int_equal(run_user(f, f->data, "passwd", "dr.nobody", "--password-file", pw1, NULL), 1);
    assert_string_equal(f->err, "tabib user: no user \"dr.nobody\"\n");
}

static void cli_password_problems(void **state)
{
    struct fixture *f = *state;
    char path[160], shortpw[160], empty[160], missing[160], huge[160];
    snprintf(path, sizeof(path), "%s/pw", f->dir);
    snprintf(shortpw, sizeof(shortpw), "%s/short", f->dir);
    snprintf(empty, sizeof(empty), "%s/empty", f->dir);
    snprintf(missing, sizeof(missing), "%s/missing", f->dir);
    snprintf(huge, sizeof(huge), "%s/huge", f->dir);
    write_file(path, "a good password\n");
    write_file(shortpw, "short\n");
    write_file(empty, "");
    char big[SIG_PASSWORD_MAX + 10];
    memset(big, 'x', sizeof(big) - 1);
    big[sizeof(big) - 1] = '\0';
    write_file(huge, big);

    assert_int_equal(run_user(f, f->data, "add", "d", "--role", "doctor", "--clinics", "n",
                              "--password-file", shortpw, NULL),
                     1);
    assert_string_equal(f->err, "tabib user: the password is too short: at least 10 bytes\n");
    assert_int_equal(run_user(f, f->data, "add", "d", "--role", "doctor", "--clinics", "n",
                              "--password-file", empty, NULL),
                     1);
    assert_non_null(strstr(f->err, "no password"));
    assert_int_equal(run_user(f, f->data, "add", "d", "--role", "doctor", "--clinics", "n",
                              "--password-file", missing, NULL),
                     1);
    assert_non_null(strstr(f->err, "cannot open the password file"));
    assert_int_equal(run_user(f, f->data, "add", "d", "--role", "doctor", "--clinics", "n",
                              "--password-file", huge, NULL),
                     1);
    assert_non_null(strstr(f->err, "too long"));
    assert_int_equal(run_user(f, f->data, "list", NULL), 0);
    assert_string_equal(f->out, "no accounts\n");
}

static void cli_password_from_stdin(void **state)
{
    struct fixture *f = *state;
    const char *add_args[] = {"add", "dr.amina", "--role", "doctor", "--clinics", "north", NULL};
    /* Not a terminal: one line, the rest left unread. */
    assert_int_equal(run_user_stdin(f, "piped password\nrest\n", add_args), 0);
    assert_true(can_login(f, "dr.amina", "piped password"));

    const char *passwd_args[] = {"passwd", "dr.amina", NULL};
    assert_int_equal(run_user_stdin(f, "no newline at the end", passwd_args), 0);
    assert_true(can_login(f, "dr.amina", "no newline at the end"));
    assert_int_equal(run_user_stdin(f, "", passwd_args), 1);
    assert_string_equal(f->err, "tabib user: standard input: no password (the input is empty)\n");
    assert_int_equal(run_user_stdin(f, "\n", passwd_args), 1);
    assert_non_null(strstr(f->err, "too short"));
    assert_int_equal(run_user_stdin(f, "nul\0byte in it\n", passwd_args), 1);
    assert_true(can_login(f, "dr.amina", "no newline at the end"));
    /* A duplicate is refused before the password is read. */
    assert_int_equal(run_user_stdin(f, "piped password\n", add_args), 1);
    assert_string_equal(f->err, "tabib user: user \"dr.amina\" already exists\n");
}

struct typist {
    int master, slave;
    const char *keys;
};

/* Types `keys` into the terminal once its echo is off (the prompt is up), or after 5 s anyway. */
static void *type_when_prompted(void *arg)
{
    struct typist *t = arg;
    for (int i = 0; i < 5000; i++) {
        struct termios tio;
        if (tcgetattr(t->slave, &tio) == 0 && !(tio.c_lflag & ECHO))
            break;
        usleep(1000);
    }
    ssize_t n = write(t->master, t->keys, strlen(t->keys));
    (void)n;
    return NULL;
}

/*
 * As run_user_argv() with f->data and a pseudo-terminal as standard input,
 * on which `keys` are typed at the prompt. What the terminal showed goes to
 * `screen`; the test fails if echo was left off.
 */
static int run_user_tty(struct fixture *f, const char *keys, const char *const *args, char *screen,
                        size_t screen_len)
{
    int master = posix_openpt(O_RDWR | O_NOCTTY);
    assert_true(master >= 0);
    char name[128];
    assert_int_equal(grantpt(master), 0);
    assert_int_equal(unlockpt(master), 0);
    assert_int_equal(ptsname_r(master, name, sizeof(name)), 0);
    int slave = open(name, O_RDWR | O_NOCTTY);
    assert_true(slave >= 0);
    int saved = dup(STDIN_FILENO);
    assert_int_equal(dup2(slave, STDIN_FILENO), STDIN_FILENO);

    struct typist t = {.master = master, .slave = slave, .keys = keys};
    pthread_t thread;
    assert_int_equal(pthread_create(&thread, NULL, type_when_prompted, &t), 0);
    int status = run_user_argv(f, f->data, args);
    pthread_join(thread, NULL);
    assert_int_equal(dup2(saved, STDIN_FILENO), STDIN_FILENO);
    close(saved);

    struct termios tio;
    assert_int_equal(tcgetattr(slave, &tio), 0);
    assert_true(tio.c_lflag & ECHO); /* restored */
    fcntl(master, F_SETFL, O_NONBLOCK);
    ssize_t n = read(master, screen, screen_len - 1);
    screen[n > 0 ? n : 0] = '\0';
    close(slave);
    close(master);
    return status;
}

static void cli_password_from_terminal(void **state)
{
    struct fixture *f = *state;
    const char *add_args[] = {"add", "dr.tty", "--role", "doctor", "--clinics", "north", NULL};
    char screen[256];
    assert_int_equal(
        run_user_tty(f, "typed secret 1\rtyped secret 1\r", add_args, screen, sizeof(screen)), 0);
    assert_string_equal(f->err, "New password for dr.tty: Repeat the password: ");
    assert_null(strstr(screen, "typed"));  /* not echoed */
    assert_non_null(strstr(screen, "\n")); /* but each Enter was */
    assert_true(can_login(f, "dr.tty", "typed secret 1"));

    const char *passwd_args[] = {"passwd", "dr.tty", NULL};
    assert_int_equal(
        run_user_tty(f, "typed secret 2\rtyped secret 3\r", passwd_args, screen, sizeof(screen)),
        1);
    assert_non_null(strstr(f->err, "the two passwords differ; nothing changed"));
    assert_true(can_login(f, "dr.tty", "typed secret 1"));
    assert_int_equal(run_user_tty(f, "\x04", passwd_args, screen, sizeof(screen)), 1); /* Ctrl-D */
    assert_non_null(strstr(f->err, "terminal: no password"));
    assert_true(can_login(f, "dr.tty", "typed secret 1"));
}

/* Expects a usage error: status 2, `words` and the usage text on errout, nothing on out. */
static void expect_usage(struct fixture *f, int status, const char *words)
{
    if (status != 2 || !strstr(f->err, words) || !strstr(f->err, "usage: tabib user add") ||
        f->out_len != 0)
        fail_msg("status %d, err \"%s\", wanted 2 and \"%s\"", status, f->err, words);
}

static void cli_usage_errors(void **state)
{
    struct fixture *f = *state;
    const char *d = f->data;
    expect_usage(f, run_user(f, d, NULL), "which command");
    expect_usage(f, run_user(f, d, "remove", "x", NULL), "unknown command \"remove\"");
    expect_usage(f, run_user(f, d, "add", NULL), "add needs a NAME");
    expect_usage(f, run_user(f, d, "add", "x", NULL), "add needs --role");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "nurse", NULL), "unknown role \"nurse\"");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "patient", NULL), "unknown role");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "doctor", NULL),
                 "a doctor needs --clinics");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "doctor", "--clinics", "a,,b", NULL),
                 "--clinics has an empty clinic id");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "doctor", "--clinics", "a,", NULL),
                 "empty clinic id");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "doctor", "--clinics", "North", NULL),
                 "invalid clinic id \"North\"");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "doctor", "--clinics", "a,b,a", NULL),
                 "lists \"a\" twice");
    expect_usage(f, run_user(f, d, "add", "Dr.X", "--role", "admin", NULL),
                 "invalid username \"Dr.X\"");
    expect_usage(f, run_user(f, d, "add", "x", "y", "--role", "admin", NULL),
                 "unexpected argument \"y\"");
    expect_usage(f, run_user(f, d, "add", "x", "--role", NULL), "--role needs a value");
    expect_usage(f, run_user(f, d, "add", "x", "--role", "admin", "--role", "admin", NULL),
                 "--role is given twice");
    expect_usage(f, run_user(f, d, "add", "x", "--force", NULL), "unknown option \"--force\"");
    expect_usage(f, run_user(f, d, "add", "x", "--roles=admin", NULL), "unknown option");
    expect_usage(f, run_user(f, d, "list", "x", NULL), "list takes no NAME");
    expect_usage(f, run_user(f, d, "list", "--role", "admin", NULL), "list takes no --role");
    expect_usage(f, run_user(f, d, "list", "--password-file", "p", NULL),
                 "list takes no --password-file");
    expect_usage(f, run_user(f, d, "disable", NULL), "disable needs a NAME");
    expect_usage(f, run_user(f, d, "disable", "x", "--clinics", "a", NULL),
                 "disable takes no --clinics");
    expect_usage(f, run_user(f, d, "passwd", NULL), "passwd needs a NAME");
    expect_usage(f, run_user(f, d, "passwd", "x", "--role", "admin", NULL), "passwd takes no");
    expect_usage(f, run_user(f, NULL, "list", NULL), "no data directory");
    expect_usage(f, run_user(f, "", "list", NULL), "no data directory");
    /* None of that touched the data dir. */
    assert_int_equal(access(f->data, F_OK), -1);

    /* "--" ends the options; help goes to out with status 0. */
    expect_usage(f, run_user(f, d, "disable", "--", "--Role", NULL), "invalid username \"--Role\"");
    assert_int_equal(run_user(f, d, "--help", NULL), 0);
    assert_non_null(strstr(f->out, "usage: tabib user add NAME --role doctor|admin"));
    assert_string_equal(f->err, "");
    assert_int_equal(run_user(f, d, "add", "x", "-h", NULL), 0);
    assert_non_null(strstr(f->out, "usage:"));

    /* Commands on existing accounts do not create a store in a mistyped place. */
    assert_int_equal(run_user(f, d, "list", NULL), 1);
    assert_non_null(strstr(f->err, "no accounts database at"));
    assert_int_equal(run_user(f, d, "disable", "x", NULL), 1);
    assert_int_equal(run_user(f, d, "passwd", "x", NULL), 1);
    assert_int_equal(access(f->data, F_OK), -1);
}

int main(void)
{
    const struct CMUnitTest tests[] = {
        cmocka_unit_test(hash_verify_round_trip),
        cmocka_unit_test(hash_is_plain_scrypt),
        cmocka_unit_test(tampered_hash_is_refused),
        cmocka_unit_test(absurd_parameters_are_refused),
        cmocka_unit_test(random_tokens),
        cmocka_unit_test(names_are_checked),
        cmocka_unit_test_setup_teardown(add_get_list, setup_open, teardown),
        cmocka_unit_test_setup_teardown(duplicate_and_invalid_accounts, setup_open, teardown),
        cmocka_unit_test_setup_teardown(login_outcomes, setup_open, teardown),
        cmocka_unit_test_setup_teardown(sessions, setup_open, teardown),
        cmocka_unit_test_setup_teardown(secrets_are_not_stored, setup_open, teardown),
        cmocka_unit_test_setup_teardown(unknown_user_costs_one_scrypt, setup_open, teardown),
        cmocka_unit_test_setup_teardown(appointments, setup_open, teardown),
        cmocka_unit_test_setup_teardown(concurrent_redeem_succeeds_once, setup_open, teardown),
        cmocka_unit_test_setup_teardown(first_admin_is_created_once, setup_open, teardown),
        cmocka_unit_test_setup_teardown(first_admin_not_made_beside_other_accounts, setup_open,
                                        teardown),
        cmocka_unit_test_setup_teardown(files_are_private, setup, teardown),
        cmocka_unit_test_setup_teardown(bad_places_are_reported, setup, teardown),
        cmocka_unit_test_setup_teardown(newer_schema_is_refused, setup_open, teardown),
        cmocka_unit_test_setup_teardown(cli_add_list_disable_passwd, setup, teardown),
        cmocka_unit_test_setup_teardown(cli_password_problems, setup, teardown),
        cmocka_unit_test_setup_teardown(cli_password_from_stdin, setup, teardown),
        cmocka_unit_test_setup_teardown(cli_password_from_terminal, setup, teardown),
        cmocka_unit_test_setup_teardown(cli_usage_errors, setup, teardown),
    };
    return cmocka_run_group_tests(tests, NULL, NULL);
}
