/*
 * http_path.c - maps request paths to files under the web root, refusing
 * anything that could leave it, and names their content types.
 *
 * Pure functions, called on the signalling thread. The rule is strict on
 * purpose: the web app has no file whose name needs a dot segment, a leading
 * dot, a backslash or a control byte, so any of those is an attack or a
 * mistake and gets 404 (never a redirect that would reveal what exists).
 */
#include "server.h"

#include <string.h>

static int hex_value(char c)
{
    if (c >= '0' && c <= '9')
        return c - '0';
    if (c >= 'a' && c <= 'f')
        return c - 'a' + 10;
    if (c >= 'A' && c <= 'F')
        return c - 'A' + 10;
    return -1;
}

/*
 * Decodes %XX escapes into out. Returns -1 for a malformed escape. Decoding
 * happens once; a decoded '%' is kept as is and then refused below, so a
 * double-encoded "%252e%252e" cannot turn into ".." later.
 */
static int percent_decode(const char *in, char *out, size_t outlen)
{
    size_t n = 0;
    for (const char *p = in; *p; p++) {
        char c = *p;
        if (c == '%') {
            int hi = hex_value(p[1]);
            int lo = hi < 0 ? -1 : hex_value(p[2]);
            if (lo < 0)
                return -1;
            c = (char)(hi * 16 + lo);
            if (c == '\0')
                return -1; /* %00 would cut the path short */
            p += 2;
        }
        if (n + 1 >= outlen)
            return -1;
        out[n++] = c;
    }
    out[n] = '\0';
    return 0;
}

/* True when the segment [s, s+len) may name a file or folder under the web root. */
static bool segment_is_safe(const char *s, size_t len)
{
    if (len == 0 || s[0] == '.')
        return false; /* ".", "..", dotfiles such as .git or .htpasswd */
    for (size_t i = 0; i < len; i++) {
        unsigned char c = (unsigned char)s[i];
        if (c < 0x20 || c == 0x7f || c == '\\' || c == '%' || c == ':')
            return false;
    }
    return true;
}

int srv_http_path_resolve(const char *request_path, char *out, size_t outlen)
{
    char decoded[1024];
    if (!request_path || request_path[0] != '/')
        return -1;
    /* Stop at a query string or fragment that reached us undecoded. */
    size_t raw_len = strcspn(request_path, "?#");
    if (raw_len >= sizeof(decoded))
        return -1;
    char raw[1024];
    memcpy(raw, request_path, raw_len);
    raw[raw_len] = '\0';
    if (percent_decode(raw, decoded, sizeof(decoded)))
        return -1;

    /* Check each segment; an empty segment (a doubled or trailing slash) is refused too. */
    const char *p = decoded + 1;
    bool last_has_dot = false;
    if (*p == '\0') {
        p = "index.html";
    } else {
        const char *seg = p;
        for (;;) {
            const char *slash = strchr(seg, '/');
            size_t len = slash ? (size_t)(slash - seg) : strlen(seg);
            if (!segment_is_safe(seg, len))
                return -1;
            last_has_dot = memchr(seg, '.', len) != NULL;
            if (!slash)
                break;
            seg = slash + 1;
        }
    }
    size_t n = strlen(p);
    /* Extensionless pages: /doctor serves doctor.html. */
    const char *suffix = (p[0] && !last_has_dot && strcmp(p, "index.html") != 0) ? ".html" : "";
    if (n + strlen(suffix) + 1 > outlen)
        return -1;
    memcpy(out, p, n);
    strcpy(out + n, suffix);
    return 0;
}

struct content_type {
    const char *ext;
    const char *type;
};

static const struct content_type content_types[] = {
    {".html", "text/html; charset=utf-8"},
    {".css", "text/css; charset=utf-8"},
    {".js", "text/javascript; charset=utf-8"},
    {".mjs", "text/javascript; charset=utf-8"},
    {".json", "application/json"},
    {".svg", "image/svg+xml"},
    {".png", "image/png"},
    {".ico", "image/x-icon"},
    {".webp", "image/webp"},
    {".woff2", "font/woff2"},
    {".txt", "text/plain; charset=utf-8"},
    {".wav", "audio/wav"},
    {".webmanifest", "application/manifest+json"},
};

const char *srv_http_content_type(const char *file_name)
{
    const char *dot = strrchr(file_name, '.');
    if (dot && !strchr(dot, '/')) {
        for (size_t i = 0; i < sizeof(content_types) / sizeof(content_types[0]); i++)
            if (strcmp(dot, content_types[i].ext) == 0)
                return content_types[i].type;
    }
    return "application/octet-stream";
}
