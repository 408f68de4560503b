/*
 * accounts.h - private to signaling/: doctor and admin accounts, sign-in
 * sessions and appointment tokens, stored in SQLite (data_dir/accounts.db).
 *
 * Passwords are kept only as scrypt hashes (OpenSSL's SCRYPT KDF); session and
 * appointment tokens are random, handed out once, and stored only as their
 * SHA-256. Nothing here logs a password or a token.
 *
 * Called on the signalling thread (the server) or by `tabib user` (its own
 * process); SQLite's WAL mode and a busy timeout let both use the file at once.
 */
#ifndef TABIB_SIGNALING_ACCOUNTS_H
#define TABIB_SIGNALING_ACCOUNTS_H

#include <stdbool.h>
#include <stddef.h>
#include <stdint.h>
#include <stdio.h>

#define SIG_USERNAME_MAX    64 /* bytes, including the NUL */
#define SIG_ID_MAX          64 /* clinic ids, consultation ids, patient references */
#define SIG_USER_CLINIC_MAX 32 /* clinics one account may be given */
#define SIG_TOKEN_CHARS     43 /* 32 random bytes in unpadded base64url */
#define SIG_PASSWORD_MIN    10
#define SIG_PASSWORD_MAX    256

enum sig_role {
    SIG_ROLE_NONE = 0,
    SIG_ROLE_PATIENT = 1,
    SIG_ROLE_DOCTOR = 2,
    SIG_ROLE_ADMIN = 3,
};

/* "patient", "doctor", "admin" (or "none"). */
const char *sig_role_name(enum sig_role role);

struct sig_user {
    int64_t id;
    char username[SIG_USERNAME_MAX];
    enum sig_role role; /* SIG_ROLE_DOCTOR or SIG_ROLE_ADMIN */
    bool disabled;
    bool all_clinics;      /* an admin of every clinic */
    unsigned clinic_count; /* the clinics a doctor staffs, or an admin is limited to */
    char clinics[SIG_USER_CLINIC_MAX][SIG_ID_MAX];
};

/*
 * True when `user` may act on `clinic_id` (staffs it, or administers it).
 * False for a disabled account or a malformed id; "every clinic" counts only
 * for an admin.
 */
bool sig_user_has_clinic(const struct sig_user *user, const char *clinic_id);

/* True when `name` is a username: 1-63 bytes of [a-z0-9._-]. NULL is not. */
bool sig_username_valid(const char *name);

/* True when `id` is a clinic id: 1-63 bytes of [a-z0-9_-]. NULL is not. */
bool sig_clinic_id_valid(const char *id);

struct sig_appointment {
    char clinic[SIG_ID_MAX];
    char patient_ref[SIG_ID_MAX]; /* "" when none was given */
    int priority;                 /* 0 routine, 1 urgent */
    int64_t issued_by;            /* user id */
    int64_t expires_ms;
};

struct sig_accounts;

/*
 * Opens (creating 0600 if needed) data_dir/accounts.db, WAL mode, schema up to
 * date. Returns a new handle, or NULL with `err`. Free with sig_accounts_close().
 */
struct sig_accounts *sig_accounts_open(const char *data_dir, char *err, size_t errlen);
void sig_accounts_close(struct sig_accounts *accounts); /* NULL does nothing */

/*
 * On a store with no account at all, creates the admin "admin" (every clinic)
 * with a random password written to password_out (>= 32 bytes) and returns 1;
 * returns 0 when accounts exist, negative on error. The caller shows the
 * password once and never stores it.
 */
int sig_accounts_ensure_first_admin(struct sig_accounts *accounts, char *password_out,
                                    size_t outlen);

/* Number of accounts, disabled ones included; negative on error. */
int sig_accounts_count(struct sig_accounts *accounts);

/*
 * Adds an account. `username`: 1-63 bytes of [a-z0-9._-]; `role` doctor or
 * admin; `clinics` borrowed (n of them; a doctor needs at least one; an admin
 * with none and `all_clinics` true administers every clinic). `password` at
 * least SIG_PASSWORD_MIN bytes. Returns 0, -EEXIST when the name is taken,
 * -EINVAL with `err` for a bad argument, -EIO for a storage error.
 */
int sig_accounts_add_user(struct sig_accounts *accounts, const char *username, enum sig_role role,
                          const char *const *clinics, unsigned n_clinics, bool all_clinics,
                          const char *password, char *err, size_t errlen);

/* Replaces the password and ends the account's sessions. 0, -ENOENT, -EINVAL, -EIO. */
int sig_accounts_set_password(struct sig_accounts *accounts, const char *username,
                              const char *password, char *err, size_t errlen);

/* Disables the account and ends its sessions at once. 0, -ENOENT, -EIO. */
int sig_accounts_disable(struct sig_accounts *accounts, const char *username);

/* Calls `fn` for each account in username order. Returns 0 or -EIO. */
int sig_accounts_list(struct sig_accounts *accounts,
                      void (*fn)(const struct sig_user *user, void *arg), void *arg);

/* Reads one account by name. 0 or -ENOENT. */
int sig_accounts_get(struct sig_accounts *accounts, const char *username, struct sig_user *out);

enum sig_login_result {
    SIG_LOGIN_OK = 0,
    SIG_LOGIN_BAD_CREDENTIALS = 1, /* unknown user or wrong password: never say which */
    SIG_LOGIN_DISABLED = 2,
    SIG_LOGIN_ERROR = 3,
};

/*
 * Checks a password and, when right, creates a session valid until
 * now_ms + ttl_ms. Writes the new token (SIG_TOKEN_CHARS + NUL) to token_out
 * and the account to user_out. The time taken does not reveal whether the
 * user exists (an unknown user still costs one scrypt).
 */
enum sig_login_result sig_accounts_login(struct sig_accounts *accounts, const char *username,
                                         const char *password, int64_t now_ms, int64_t ttl_ms,
                                         char *token_out, struct sig_user *user_out);

/*
 * Finds the live session for `token`: 0 with the account, -ENOENT if unknown,
 * expired or disabled.
 */
int sig_accounts_session(struct sig_accounts *accounts, const char *token, int64_t now_ms,
                         struct sig_user *user_out);

/* Ends one session. 0 or -ENOENT. */
int sig_accounts_logout(struct sig_accounts *accounts, const char *token);

/*
 * Issues a single-use appointment token for `appt` (copied). Writes the token
 * to token_out (SIG_TOKEN_CHARS + NUL). Returns 0, -EINVAL when a field is
 * out of range (clinic not a clinic id; patient_ref 64 bytes or longer or
 * with a control character; priority not 0 or 1; issued_by no account;
 * expires_ms <= 0), or -EIO.
 */
int sig_accounts_issue_appointment(struct sig_accounts *accounts,
                                   const struct sig_appointment *appt, char *token_out);

/*
 * Redeems an appointment token: returns 0 and the appointment exactly once;
 * -ENOENT for an unknown, used or expired token. With `only_clinic` set, an
 * appointment for another clinic is not redeemed: -EXDEV, with out->clinic
 * naming the clinic it is for (the token stays usable).
 */
int sig_accounts_redeem_appointment(struct sig_accounts *accounts, const char *token,
                                    int64_t now_ms, const char *only_clinic,
                                    struct sig_appointment *out);

/* Writes a new random token (32 bytes, unpadded base64url, SIG_TOKEN_CHARS + NUL). 0 or -EIO. */
int sig_random_token(char *out);

/*
 * scrypt password hashing in the self-describing form scrypt$N$r$p$salt$hash
 * (standard base64 without padding).
 *
 * sig_password_hash() hashes `password` (at most SIG_PASSWORD_MAX bytes; the
 * length policy is the callers') with N=16384, r=8, p=1 and a fresh 16-byte
 * salt into `out`. Returns 0, -EINVAL (too long), -ENOSPC (outlen under
 * SIG_PASSWORD_HASH_MAX may not do) or -EIO.
 *
 * sig_password_verify() is true when `password` matches `encoded`; false also
 * for a malformed string or parameters out of bounds (N a power of two from
 * 2^10 to 2^20, r 1-32, p 1-16, at most 256 MiB and 32 times the default
 * work), so a damaged store cannot make it allocate or spin without limit.
 */
#define SIG_PASSWORD_HASH_MAX 160
int sig_password_hash(const char *password, char *out, size_t outlen);
bool sig_password_verify(const char *password, const char *encoded);

/*
 * `tabib user add|list|disable|passwd ...` (argv[0] is "user"). Reads
 * passwords from --password-file FILE, or prompts without echo on a terminal,
 * or reads one line from standard input. Prints results to `out` and problems
 * to `errout`. Returns the process exit status (0, 1 failure, 2 usage).
 */
int sig_user_command(int argc, char **argv, const char *data_dir, FILE *out, FILE *errout);

#endif
