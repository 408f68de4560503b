/*
 * user_cli.c - `tabib user`: add, list, disable accounts and set their
 * passwords from a shell on the server host.
 *
 * Runs in its own process, on its main thread, possibly beside a running
 * server: both open data_dir/accounts.db and SQLite's locking keeps them
 * apart (accounts.c). Disabling an account or changing its password ends its
 * sessions at once, also for the running server, which looks sessions up in
 * the file on every use.
 *
 * A password never comes from the command line, where `ps` and the shell
 * history would keep it: it comes from --password-file, from a prompt without
 * echo on a terminal, or as one line of standard input for scripts. Buffers
 * that held one are wiped before they go.
 */
#include "accounts.h"
#include "audit.h"

#include <assert.h>
#include <errno.h>
#include <fcntl.h>
#include <stdarg.h>
#include <stdlib.h>
#include <string.h>
#include <sys/stat.h>
#include <termios.h>
#include <pwd.h>
#include <unistd.h>

#include <jansson.h>

#include <openssl/crypto.h>

#define PROG "tabib user"
/* A password line: SIG_PASSWORD_MAX bytes, room for a "\r" to strip, and the NUL. */
#define PASSWORD_BUF (SIG_PASSWORD_MAX + 2)
#define CLINICS_TEXT (SIG_USER_CLINIC_MAX * SIG_ID_MAX)

static const char usage_text[] =
    "usage: tabib user add NAME --role doctor|admin [--clinics A,B,...] [--password-file FILE]\n"
    "       tabib user list\n"
    "       tabib user disable NAME\n"
    "       tabib user passwd NAME [--password-file FILE]\n"
    "\n"
    "Manages the doctor and admin accounts in DATA_DIR/accounts.db.\n"
    "\n"
    "  --role ROLE           doctor or admin\n"
    "  --clinics A,B,...     the clinics a doctor staffs (required for a doctor) or an\n"
    "                        admin is limited to (an admin without it has every clinic)\n"
    "  --password-file FILE  take the password from the first line of FILE; otherwise it\n"
    "                        is asked twice on a terminal, or read as one line of input\n"
    "  --data-dir DIR        the server's data directory (anywhere after `user`)\n"
    "  -h, --help            show this text\n"
    "\n"
    "Names are 1 to 63 characters of a-z, 0-9, '.', '_' and '-' (clinic ids: no '.').\n"
    "Passwords are 10 to 256 bytes. Exit status: 0 done, 1 failed, 2 bad usage.\n";

struct user_args {
    const char *command; /* add, list, disable, passwd */
    const char *name;
    const char *role;
    const char *clinics;
    const char *password_file;
    const char *data_dir;
    bool help;
};

/* Copies at most 63 bytes of `s` for a message, '?' for anything unprintable. */
static const char *printable(const char *s, char out[SIG_ID_MAX])
{
    size_t i = 0;
    for (; s[i] && i < SIG_ID_MAX - 1; i++)
        out[i] = s[i] >= 0x20 && s[i] < 0x7f ? s[i] : '?';
    out[i] = '\0';
    return out;
}

/* Prints "tabib user: <message>" and the usage text to errout; returns 2. */
__attribute__((format(printf, 2, 3))) static int usage_error(FILE *errout, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", errout);
    vfprintf(errout, fmt, ap);
    va_end(ap);
    fputs("\n\n", errout);
    fputs(usage_text, errout);
    return 2;
}

/* Prints "tabib user: <message>" to errout; returns 1. */
__attribute__((format(printf, 2, 3))) static int failure(FILE *errout, const char *fmt, ...)
{
    va_list ap;
    va_start(ap, fmt);
    fputs(PROG ": ", errout);
    vfprintf(errout, fmt, ap);
    va_end(ap);
    fputc('\n', errout);
    return 1;
}

/* Splits argv into options (anywhere, "--opt value" or "--opt=value") and words. 0 or 2. */
static int parse_args(int argc, char **argv, struct user_args *a, FILE *errout)
{
    const char *words[2];
    int n_words = 0;
    bool options_done = false;
    char shown[SIG_ID_MAX];
    for (int i = 1; i < argc; i++) {
        const char *arg = argv[i];
        if (!options_done && strcmp(arg, "--") == 0) {
            options_done = true;
            continue;
        }
        if (!options_done && (strcmp(arg, "-h") == 0 || strcmp(arg, "--help") == 0)) {
            a->help = true;
            continue;
        }
        if (!options_done && arg[0] == '-' && arg[1] != '\0') {
            struct {
                const char *name;
                const char **slot;
            } options[] = {
                {"--data-dir", &a->data_dir},
                {"--role", &a->role},
                {"--clinics", &a->clinics},
                {"--password-file", &a->password_file},
            };
            size_t k = 0, len = 0;
            for (; k < sizeof(options) / sizeof(options[0]); k++) {
                len = strlen(options[k].name);
                if (strncmp(arg, options[k].name, len) == 0 &&
                    (arg[len] == '\0' || arg[len] == '='))
                    break;
            }
            if (k == sizeof(options) / sizeof(options[0]))
                return usage_error(errout, "unknown option \"%s\"", printable(arg, shown));
            const char *value = arg[len] == '=' ? arg + len + 1 : (i + 1 < argc ? argv[++i] : NULL);
            if (!value || !value[0])
                return usage_error(errout, "%s needs a value", options[k].name);
            if (*options[k].slot)
                return usage_error(errout, "%s is given twice", options[k].name);
            *options[k].slot = value;
            continue;
        }
        if (n_words == 2)
            return usage_error(errout, "unexpected argument \"%s\"", printable(arg, shown));
        words[n_words++] = arg;
    }
    if (a->help)
        return 0;
    if (n_words == 0)
        return usage_error(errout, "which command: add, list, disable or passwd?");
    a->command = words[0];
    a->name = n_words > 1 ? words[1] : NULL;

    bool add = strcmp(a->command, "add") == 0, list = strcmp(a->command, "list") == 0;
    bool disable = strcmp(a->command, "disable") == 0, passwd = strcmp(a->command, "passwd") == 0;
    if (!add && !list && !disable && !passwd)
        return usage_error(errout, "unknown command \"%s\"", printable(a->command, shown));
    if (list && a->name)
        return usage_error(errout, "list takes no NAME");
    if (!list && !a->name)
        return usage_error(errout, "%s needs a NAME", a->command);
    if (!add && (a->role || a->clinics))
        return usage_error(errout, "%s takes no %s", a->command, a->role ? "--role" : "--clinics");
    if ((list || disable) && a->password_file)
        return usage_error(errout, "%s takes no --password-file", a->command);
    if (add && !a->role)
        return usage_error(errout, "add needs --role doctor or --role admin");
    if (a->name && !sig_username_valid(a->name))
        return usage_error(errout,
                           "invalid username \"%s\": use 1 to 63 characters of a-z, 0-9, '.', "
                           "'_' and '-'",
                           printable(a->name, shown));
    return 0;
}

/*
 * Reads one line from `fd` into buf (PASSWORD_BUF bytes) without its "\n" or
 * "\r\n", a byte at a time so nothing past the line is consumed or left in a
 * stdio buffer. Returns the length, -ENODATA at the end of input before any
 * byte, -E2BIG for a line too long, -EINVAL for a NUL byte, or -errno.
 */
static int read_line(int fd, char *buf)
{
    size_t n = 0;
    for (;;) {
        char c;
        ssize_t r = read(fd, &c, 1);
        if (r < 0 && errno == EINTR)
            continue;
        if (r < 0)
            return -errno;
        if (r == 0 && n == 0)
            return -ENODATA;
        if (r == 0 || c == '\n')
            break;
        if (c == '\0')
            return -EINVAL;
        if (n == PASSWORD_BUF - 1)
            return -E2BIG;
        buf[n++] = c;
    }
    if (n > 0 && buf[n - 1] == '\r')
        n--;
    buf[n] = '\0';
    return (int)n;
}

static const char *read_line_error(int rc)
{
    switch (rc) {
    case -ENODATA:
        return "no password (the input is empty)";
    case -E2BIG:
        return "the password is too long: at most 256 bytes";
    case -EINVAL:
        return "the password contains a NUL byte";
    default:
        return strerror(-rc);
    }
}

/*
 * Asks for the password twice on the terminal on stdin, echo off, into buf
 * (PASSWORD_BUF bytes); prompts go to errout. Echo stays off for both lines,
 * so a password typed ahead is not lost, and is restored before returning.
 * 0, or 1 after a message on errout (buf wiped).
 */
static int prompt_twice(const char *name, char *buf, FILE *errout)
{
    struct termios saved, quiet;
    if (tcgetattr(STDIN_FILENO, &saved) != 0)
        return failure(errout, "terminal: %s", strerror(errno));
    quiet = saved;
    quiet.c_lflag &= ~(tcflag_t)(ECHO | ECHOE | ECHOK);
    quiet.c_lflag |= ECHONL; /* Enter still moves to the next line */
    fprintf(errout, "New password for %s: ", name);
    fflush(errout);
    if (tcsetattr(STDIN_FILENO, TCSAFLUSH, &quiet) != 0)
        return failure(errout, "terminal: %s", strerror(errno));
    char again[PASSWORD_BUF];
    int rc = read_line(STDIN_FILENO, buf), rc2 = 0;
    if (rc >= 0) {
        fputs("Repeat the password: ", errout);
        fflush(errout);
        rc2 = read_line(STDIN_FILENO, again);
    }
    tcsetattr(STDIN_FILENO, TCSANOW, &saved);
    bool same = rc >= 0 && rc2 >= 0 && strcmp(buf, again) == 0;
    OPENSSL_cleanse(again, sizeof(again));
    if (same)
        return 0;
    OPENSSL_cleanse(buf, PASSWORD_BUF);
    if (rc < 0 || rc2 < 0) {
        fputc('\n', errout); /* end of input: no Enter was echoed */
        return failure(errout, "terminal: %s", read_line_error(rc < 0 ? rc : rc2));
    }
    return failure(errout, "the two passwords differ; nothing changed");
}

/*
 * Gets the new password for `name` into buf (PASSWORD_BUF bytes): from
 * `file`, else twice from a terminal, else one line of standard input.
 * 0, or 1 after a message on errout (buf wiped).
 */
static int get_password(const char *file, const char *name, char *buf, FILE *errout)
{
    int rc;
    if (file) {
        int fd = open(file, O_RDONLY | O_CLOEXEC | O_NOCTTY);
        if (fd < 0)
            return failure(errout, "cannot open the password file \"%s\": %s", file,
                           strerror(errno));
        rc = read_line(fd, buf);
        close(fd);
        if (rc < 0) {
            OPENSSL_cleanse(buf, PASSWORD_BUF);
            return failure(errout, "password file \"%s\": %s", file, read_line_error(rc));
        }
        return 0;
    }
    if (!isatty(STDIN_FILENO)) {
        rc = read_line(STDIN_FILENO, buf);
        if (rc < 0) {
            OPENSSL_cleanse(buf, PASSWORD_BUF);
            return failure(errout, "standard input: %s", read_line_error(rc));
        }
        return 0;
    }
    return prompt_twice(name, buf, errout);
}

/*
 * Opens the store in `dir`. For commands that change or show existing
 * accounts the file must exist already: a mistyped --data-dir should not
 * quietly make an empty store. NULL after a message on errout.
 */
static struct sig_accounts *open_store(const char *dir, bool must_exist, FILE *errout)
{
    char path[4096], err[512];
    if (must_exist) {
        struct stat st;
        snprintf(path, sizeof(path), "%s/accounts.db", dir);
        if (stat(path, &st) != 0) {
            failure(errout, "no accounts database at \"%s\" (%s); is --data-dir right?", path,
                    strerror(errno));
            return NULL;
        }
    }
    struct sig_accounts *acc = sig_accounts_open(dir, err, sizeof(err));
    if (!acc)
        failure(errout, "%s", err);
    return acc;
}

/* Splits "a,b,c" into `ids` (pointers into `storage`). Returns the count, or -1 after a usage
 * error. */
static int split_clinics(const char *list, char storage[SIG_USER_CLINIC_MAX][SIG_ID_MAX],
                         const char *ids[SIG_USER_CLINIC_MAX], FILE *errout)
{
    char shown[SIG_ID_MAX];
    int n = 0;
    for (const char *p = list;; p++) {
        size_t len = strcspn(p, ",");
        if (n == SIG_USER_CLINIC_MAX) {
            usage_error(errout, "--clinics lists more than %d clinics", SIG_USER_CLINIC_MAX);
            return -1;
        }
        if (len == 0 || len >= SIG_ID_MAX) {
            usage_error(errout, "--clinics has %s clinic id", len ? "an over-long" : "an empty");
            return -1;
        }
        memcpy(storage[n], p, len);
        storage[n][len] = '\0';
        if (!sig_clinic_id_valid(storage[n])) {
            usage_error(errout,
                        "invalid clinic id \"%s\": use 1 to 63 characters of a-z, 0-9, '_' and '-'",
                        printable(storage[n], shown));
            return -1;
        }
        for (int j = 0; j < n; j++)
            if (strcmp(storage[j], storage[n]) == 0) {
                usage_error(errout, "--clinics lists \"%s\" twice", storage[n]);
                return -1;
            }
        ids[n] = storage[n];
        n++;
        p += len;
        if (*p == '\0')
            return n;
    }
}

/* Writes the clinics of `u` as "a,b" or "all" into out (CLINICS_TEXT bytes). */
static void clinics_text(const struct sig_user *u, char *out)
{
    if (u->all_clinics) {
        strcpy(out, "all");
        return;
    }
    size_t len = 0;
    out[0] = '\0';
    for (unsigned i = 0; i < u->clinic_count && i < SIG_USER_CLINIC_MAX; i++)
        len += (size_t)snprintf(out + len, CLINICS_TEXT - len, "%s%s", i ? "," : "", u->clinics[i]);
    if (len == 0)
        strcpy(out, "-");
}

/*
 * Records an account change in the audit log, as done by the system user
 * who ran the command. The change is already made; if the log cannot take
 * it, say so loudly and fail, so that a script notices.
 */
static int record_account_change(const char *dir, const char *type, const char *username,
                                 const char *role, const char *clinics, FILE *errout)
{
    struct passwd *pw = getpwuid(getuid());
    json_t *d =
        json_pack("{s:s, s:s?, s:s?}", "username", username, "role", role, "clinics", clinics);
    char *detail = d ? json_dumps(d, JSON_COMPACT) : NULL;
    json_decref(d);
    struct audit_event ev = {.type = type,
                             .actor_role = "operator",
                             .actor_id = pw ? pw->pw_name : "unknown",
                             .outcome = "ok",
                             .detail_json = detail};
    char err[512];
    int rc = detail ? audit_append_once(dir, &ev, err, sizeof(err)) : -1;
    if (!detail)
        snprintf(err, sizeof(err), "out of memory");
    free(detail);
    if (rc != 0)
        return failure(errout, "the change was made but could not be recorded in the audit log: %s",
                       err);
    return 0;
}

static int command_add(const struct user_args *a, const char *dir, FILE *out, FILE *errout)
{
    enum sig_role role = strcmp(a->role, "doctor") == 0  ? SIG_ROLE_DOCTOR
                         : strcmp(a->role, "admin") == 0 ? SIG_ROLE_ADMIN
                                                         : SIG_ROLE_NONE;
    char shown[SIG_ID_MAX];
    if (role == SIG_ROLE_NONE)
        return usage_error(errout, "unknown role \"%s\": doctor or admin",
                           printable(a->role, shown));
    if (role == SIG_ROLE_DOCTOR && !a->clinics)
        return usage_error(errout, "a doctor needs --clinics: the clinics they staff");
    char storage[SIG_USER_CLINIC_MAX][SIG_ID_MAX];
    const char *ids[SIG_USER_CLINIC_MAX];
    int n = a->clinics ? split_clinics(a->clinics, storage, ids, errout) : 0;
    if (n < 0)
        return 2;

    struct sig_accounts *acc = open_store(dir, false, errout);
    if (!acc)
        return 1;
    struct sig_user existing;
    int status = 1;
    char password[PASSWORD_BUF], err[256];
    if (sig_accounts_get(acc, a->name, &existing) == 0) {
        failure(errout, "user \"%s\" already exists", a->name);
        goto out;
    }
    if (get_password(a->password_file, a->name, password, errout))
        goto out;
    int rc = sig_accounts_add_user(acc, a->name, role, ids, (unsigned)n, n == 0, password, err,
                                   sizeof(err));
    OPENSSL_cleanse(password, sizeof(password));
    if (rc) {
        failure(errout, "%s", err);
        goto out;
    }
    if (n == 0) {
        fprintf(out, "added %s \"%s\" (every clinic)\n", a->role, a->name);
    } else {
        char text[CLINICS_TEXT];
        struct sig_user added;
        if (sig_accounts_get(acc, a->name, &added) == 0)
            clinics_text(&added, text);
        else
            snprintf(text, sizeof(text), "%s", a->clinics);
        fprintf(out, "added %s \"%s\" (clinics %s)\n", a->role, a->name, text);
    }
    status = record_account_change(dir, "user_added", a->name, a->role, n == 0 ? "all" : a->clinics,
                                   errout);
out:
    sig_accounts_close(acc);
    return status;
}

struct user_list {
    struct sig_user *users;
    size_t n, cap;
    bool out_of_memory;
};

static void collect_user(const struct sig_user *user, void *arg)
{
    struct user_list *l = arg;
    if (l->n == l->cap) {
        size_t more = l->cap ? 2 * l->cap : 16;
        struct sig_user *grown = realloc(l->users, more * sizeof(*grown));
        if (!grown) {
            l->out_of_memory = true;
            return;
        }
        l->users = grown;
        l->cap = more;
    }
    l->users[l->n++] = *user;
}

static int command_list(const char *dir, FILE *out, FILE *errout)
{
    struct sig_accounts *acc = open_store(dir, true, errout);
    if (!acc)
        return 1;
    struct user_list l = {0};
    int rc = sig_accounts_list(acc, collect_user, &l);
    sig_accounts_close(acc);
    if (rc || l.out_of_memory) {
        free(l.users);
        return failure(errout, "cannot read the accounts: %s",
                       rc ? strerror(-rc) : "out of memory");
    }
    if (l.n == 0) {
        fputs("no accounts\n", out);
        free(l.users);
        return 0;
    }
    int w_name = (int)strlen("USERNAME"), w_role = (int)strlen("ROLE");
    int w_clinics = (int)strlen("CLINICS");
    char text[CLINICS_TEXT];
    for (size_t i = 0; i < l.n; i++) {
        clinics_text(&l.users[i], text);
        int len = (int)strlen(l.users[i].username);
        int rlen = (int)strlen(sig_role_name(l.users[i].role)), clen = (int)strlen(text);
        w_name = len > w_name ? len : w_name;
        w_role = rlen > w_role ? rlen : w_role;
        w_clinics = clen > w_clinics ? clen : w_clinics;
    }
    fprintf(out, "%-*s  %-*s  %-*s  %s\n", w_name, "USERNAME", w_role, "ROLE", w_clinics, "CLINICS",
            "STATUS");
    for (size_t i = 0; i < l.n; i++) {
        const struct sig_user *u = &l.users[i];
        clinics_text(u, text);
        fprintf(out, "%-*s  %-*s  %-*s  %s\n", w_name, u->username, w_role, sig_role_name(u->role),
                w_clinics, text, u->disabled ? "disabled" : "enabled");
    }
    free(l.users);
    return 0;
}

static int command_disable(const struct user_args *a, const char *dir, FILE *out, FILE *errout)
{
    struct sig_accounts *acc = open_store(dir, true, errout);
    if (!acc)
        return 1;
    int rc = sig_accounts_disable(acc, a->name);
    sig_accounts_close(acc);
    if (rc == -ENOENT)
        return failure(errout, "no user \"%s\"", a->name);
    if (rc)
        return failure(errout, "cannot disable \"%s\": %s", a->name, strerror(-rc));
    fprintf(out, "disabled \"%s\"; its sessions are ended\n", a->name);
    return record_account_change(dir, "user_disabled", a->name, NULL, NULL, errout);
}

static int command_passwd(const struct user_args *a, const char *dir, FILE *out, FILE *errout)
{
    struct sig_accounts *acc = open_store(dir, true, errout);
    if (!acc)
        return 1;
    struct sig_user user;
    int status = 1;
    char password[PASSWORD_BUF], err[256];
    if (sig_accounts_get(acc, a->name, &user) != 0) {
        failure(errout, "no user \"%s\"", a->name);
        goto out;
    }
    if (get_password(a->password_file, a->name, password, errout))
        goto out;
    int rc = sig_accounts_set_password(acc, a->name, password, err, sizeof(err));
    OPENSSL_cleanse(password, sizeof(password));
    if (rc) {
        failure(errout, "%s", err);
        goto out;
    }
    fprintf(out, "changed the password of \"%s\"; its sessions are ended\n", a->name);
    status = record_account_change(dir, "password_changed", a->name, NULL, NULL, errout);
out:
    sig_accounts_close(acc);
    return status;
}

int sig_user_command(int argc, char **argv, const char *data_dir, FILE *out, FILE *errout)
{
    assert(argc >= 1 && argv && out && errout);
    struct user_args a = {0};
    int rc = parse_args(argc, argv, &a, errout);
    if (rc)
        return rc;
    if (a.help) {
        fputs(usage_text, out);
        return 0;
    }
    const char *dir = a.data_dir ? a.data_dir : data_dir;
    if (!dir || !dir[0])
        return usage_error(errout, "no data directory: give --data-dir DIR");
    if (strcmp(a.command, "add") == 0)
        return command_add(&a, dir, out, errout);
    if (strcmp(a.command, "list") == 0)
        return command_list(dir, out, errout);
    if (strcmp(a.command, "disable") == 0)
        return command_disable(&a, dir, out, errout);
    return command_passwd(&a, dir, out, errout);
}
