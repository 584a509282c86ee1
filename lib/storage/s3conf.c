/* S3 endpoint, region and credential resolution. */
#include <ctype.h>
#include <errno.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "sto_internal.h"
#include "sto/err.h"
#include "sto/s3conf.h"

static void set_err(char *err, size_t len, const char *fmt, const char *a)
{
    if (err && len) snprintf(err, len, fmt, a);
}

static void default_region(char *out, size_t len)
{
    const char *r = getenv("AWS_REGION");
    if (!r || !*r) r = getenv("AWS_DEFAULT_REGION");
    snprintf(out, len, "%s", r && *r ? r : "us-east-1");
}

int sto_s3_endpoint_parse(const char *url, sto_s3_endpoint_t *out, char *err, size_t errlen)
{
    memset(out, 0, sizeof(*out));
    default_region(out->region, sizeof(out->region));
    const char *rest;
    if (strncasecmp(url, "https://", 8) == 0) {
        out->tls = 1;
        out->port = 443;
        rest = url + 8;
    } else if (strncasecmp(url, "http://", 7) == 0) {
        out->port = 80;
        rest = url + 7;
    } else {
        set_err(err, errlen, "endpoint '%s' must start with http:// or https://", url);
        return STO_EURI;
    }
    size_t n = strlen(rest);
    if (n && rest[n - 1] == '/') n--;
    if (memchr(rest, '/', n)) {
        set_err(err, errlen, "endpoint '%s' must not have a path (put the bucket in the s3:// URI)",
                url);
        return STO_EURI;
    }
    if (sto__parse_hostport(rest, n, out->host, sizeof(out->host), &out->port) != 0) {
        set_err(err, errlen, "endpoint '%s' has no valid host[:port]", url);
        return STO_EURI;
    }
    return 0;
}

static int is_ip(const char *h)
{
    if (strchr(h, ':')) return 1;
    for (const char *p = h; *p; p++)
        if (!isdigit((unsigned char)*p) && *p != '.') return 0;
    return 1;
}

int sto_s3_endpoint_resolve(const sto_uri_t *u, const char *config_endpoint, int virtual_host,
                            sto_s3_endpoint_t *out, char *err, size_t errlen)
{
    int rc;
    if (u->scheme != STO_SCHEME_S3) {
        set_err(err, errlen, "%s", "not an s3:// URI");
        return STO_EURI;
    }
    if (u->endpoint[0]) {
        char url[300];
        snprintf(url, sizeof(url), "http://%s", u->endpoint);
        if ((rc = sto_s3_endpoint_parse(url, out, err, errlen)) != 0) return rc;
        if (out->port == 443) out->tls = 1;
        snprintf(out->source, sizeof(out->source), "uri");
    } else if (config_endpoint && *config_endpoint) {
        if ((rc = sto_s3_endpoint_parse(config_endpoint, out, err, errlen)) != 0) return rc;
        snprintf(out->source, sizeof(out->source), "config");
    } else if (getenv("AWS_ENDPOINT_URL") && *getenv("AWS_ENDPOINT_URL")) {
        if ((rc = sto_s3_endpoint_parse(getenv("AWS_ENDPOINT_URL"), out, err, errlen)) != 0)
            return rc;
        snprintf(out->source, sizeof(out->source), "AWS_ENDPOINT_URL");
    } else {
        memset(out, 0, sizeof(*out));
        default_region(out->region, sizeof(out->region));
        out->tls = 1;
        out->port = 443;
        snprintf(out->host, sizeof(out->host), "s3.%s.amazonaws.com", out->region);
        snprintf(out->source, sizeof(out->source), "aws");
    }
    if (virtual_host) {
        if (is_ip(out->host)) {
            set_err(err, errlen, "virtual-host addressing needs a DNS endpoint, not %s", out->host);
            return STO_EURI;
        }
        if (out->tls && strchr(u->authority, '.')) {
            set_err(err, errlen,
                    "bucket '%s' has dots: its virtual-host name does not match the endpoint's "
                    "TLS certificate; use path-style addressing",
                    u->authority);
            return STO_EURI;
        }
        out->virtual_host = 1;
    }
    return 0;
}

void sto_s3_host_header(const sto_s3_endpoint_t *e, const char *bucket, char *out, size_t len)
{
    int deflt = (e->tls && e->port == 443) || (!e->tls && e->port == 80);
    int v6 = strchr(e->host, ':') != NULL;
    char port[16] = "";
    if (!deflt) snprintf(port, sizeof(port), ":%d", e->port);
    snprintf(out, len, "%s%s%s%s%s%s", e->virtual_host && bucket ? bucket : "",
             e->virtual_host && bucket ? "." : "", v6 ? "[" : "", e->host, v6 ? "]" : "", port);
}

static char *trim(char *s)
{
    while (isspace((unsigned char)*s)) s++;
    char *e = s + strlen(s);
    while (e > s && isspace((unsigned char)e[-1])) *--e = 0;
    return s;
}

static int load_profile(sto_s3_creds_t *c, const char *path, const char *profile, char *err,
                        size_t errlen, int *found_file)
{
    FILE *f = fopen(path, "r");
    *found_file = f != NULL;
    if (!f) return 0;
    char line[4096];
    int in = 0, seen = 0;
    while (fgets(line, sizeof(line), f)) {
        char *l = trim(line);
        if (!*l || *l == '#' || *l == ';') continue;
        if (*l == '[') {
            char *end = strchr(l, ']');
            if (!end) continue;
            *end = 0;
            char *name = trim(l + 1);
            if (strncmp(name, "profile ", 8) == 0) name = trim(name + 8);
            in = strcmp(name, profile) == 0;
            seen |= in;
            continue;
        }
        if (!in) continue;
        char *eq = strchr(l, '=');
        if (!eq) continue;
        *eq = 0;
        char *k = trim(l), *v = trim(eq + 1);
        if (strcmp(k, "aws_access_key_id") == 0)
            snprintf(c->access_key, sizeof(c->access_key), "%s", v);
        else if (strcmp(k, "aws_secret_access_key") == 0)
            snprintf(c->secret_key, sizeof(c->secret_key), "%s", v);
        else if (strcmp(k, "aws_session_token") == 0)
            snprintf(c->session_token, sizeof(c->session_token), "%s", v);
    }
    fclose(f);
    if (!seen) return 0;
    if (!c->access_key[0] || !c->secret_key[0]) {
        if (err && errlen)
            snprintf(err, errlen,
                     "profile '%s' in %s lacks aws_access_key_id or aws_secret_access_key",
                     profile, path);
        return STO_EPERM;
    }
    snprintf(c->source, sizeof(c->source), "profile %s in %s", profile, path);
    return 1;
}

int sto_s3_creds_load(sto_s3_creds_t *c, char *err, size_t errlen)
{
    memset(c, 0, sizeof(*c));
    const char *ak = getenv("AWS_ACCESS_KEY_ID"), *sk = getenv("AWS_SECRET_ACCESS_KEY");
    const char *tok = getenv("AWS_SESSION_TOKEN");
    int have_ak = ak && *ak, have_sk = sk && *sk;
    if (have_ak || have_sk) {
        if (!have_ak || !have_sk) {
            set_err(err, errlen, "%s",
                    have_ak ? "AWS_ACCESS_KEY_ID is set but AWS_SECRET_ACCESS_KEY is not"
                            : "AWS_SECRET_ACCESS_KEY is set but AWS_ACCESS_KEY_ID is not");
            return STO_EPERM;
        }
        snprintf(c->access_key, sizeof(c->access_key), "%s", ak);
        snprintf(c->secret_key, sizeof(c->secret_key), "%s", sk);
        if (tok) snprintf(c->session_token, sizeof(c->session_token), "%s", tok);
        snprintf(c->source, sizeof(c->source), "environment");
        return 0;
    }
    const char *profile = getenv("AWS_PROFILE");
    int named = profile && *profile;
    if (!named) profile = "default";
    char path[1024];
    const char *file = getenv("AWS_SHARED_CREDENTIALS_FILE");
    if (file && *file) {
        snprintf(path, sizeof(path), "%s", file);
    } else {
        const char *home = getenv("HOME");
        snprintf(path, sizeof(path), "%s/.aws/credentials", home && *home ? home : ".");
    }
    int found_file = 0;
    int rc = load_profile(c, path, profile, err, errlen, &found_file);
    if (rc < 0) return rc;
    if (rc == 1) return 0;
    if (named) {
        if (err && errlen)
            snprintf(err, errlen, "AWS_PROFILE=%s: no such profile in %s%s", profile, path,
                     found_file ? "" : " (file not found)");
        memset(c, 0, sizeof(*c));
        return STO_EPERM;
    }
    memset(c, 0, sizeof(*c));
    c->anonymous = 1;
    snprintf(c->source, sizeof(c->source), "none (anonymous requests)");
    return 0;
}
