/*
 * The URL of a transfer, as an easy handle gives it to libcurl.
 *
 * Given a URL string, libcurl parses it at every transfer, then prints it
 * back from its parts to normalise it, a byte at a time through its own
 * printf: about 20,000 instructions of a get_user's 108,000. Given a parsed
 * URL (CURLOPT_CURLU) it does neither. So an easy handle keeps one, parsed
 * by libcurl from the first URL of an origin ("scheme://user@host:port"),
 * and a later URL of the same origin only sets its path and query on it.
 *
 * Only a URL whose path and query libcurl's parse keeps byte for byte goes
 * that way: unreserved bytes and "/" in the path, never "/." (a dot segment,
 * which the parse removes), unreserved bytes, "=" and "&" in a query. A "%"
 * never does: curl_url_set writes %XX in lower case where the parse keeps
 * what it was given. Any other URL goes to libcurl as a string, as it did.
 *
 * CURLOPT_URL is set either way: it is the transfer's effective URL, and
 * while it is set libcurl does not print one from the parts.
 */
#include <stdlib.h>
#include <string.h>

#include "private.h"

#if PSG_HAS_CURLU

/* Bytes libcurl's parse keeps as they are: PATH in a path, QUERY in a
 * query; and SCHEME, those of a scheme (a table: every byte of every URL
 * is looked up). */
enum { PATH = 1, QUERY = 2, SCHEME = 4 };
/* clang-format off */
#define ALL_10 7, 7, 7, 7, 7, 7, 7, 7, 7, 7
#define ALL_26 ALL_10, ALL_10, 7, 7, 7, 7, 7, 7
#define NONE_16 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0, 0
static const unsigned char PLAIN[256] = {
    NONE_16, NONE_16,                                           /* 0x00-0x1f */
    0, 0, 0, 0, 0, 0, QUERY, 0, 0, 0, 0, SCHEME, 0, 7, 7, PATH, /* & + - . / */
    ALL_10, 0, 0, 0, QUERY, 0, 0,                               /* 0-9 = */
    0, ALL_26, 0, 0, 0, 0, PATH | QUERY,                        /* A-Z _ */
    0, ALL_26, 0, 0, 0, PATH | QUERY, 0,                        /* a-z ~ */
    NONE_16, NONE_16, NONE_16, NONE_16, NONE_16, NONE_16, NONE_16, NONE_16};
/* clang-format on */

/* A path this long or longer, with a query, goes as a string (the path is
 * copied to the C stack to end it before the "?"). */
#define PATH_COPY_MAX 1024

/* The length of url's origin: a scheme, "://", then what comes before the
 * next "/", holding no byte that ends an authority early ("?", "#", "\")
 * nor a blank or control byte; 0 when url does not start so. */
static size_t origin_length(const char *url, size_t len)
{
    size_t i = 0;
    while (i < len && (PLAIN[(unsigned char)url[i]] & SCHEME))
        i++;
    if (i == 0 || len - i < 3 || memcmp(url + i, "://", 3) != 0)
        return 0;
    for (i += 3; i < len; i++) {
        unsigned char c = (unsigned char)url[i];
        if (c == '/')
            return i;
        if (c <= ' ' || c >= 0x7f || c == '?' || c == '#' || c == '\\')
            return 0;
    }
    return 0;
}

/* Whether rest (a path, then maybe "?" and a query) is plain; *path_len is
 * the path's length. */
static int plain_rest(const char *rest, size_t len, size_t *path_len)
{
    size_t i = 0;
    for (; i < len && rest[i] != '?'; i++)
        if (!(PLAIN[(unsigned char)rest[i]] & PATH) ||
            (rest[i] == '/' && i + 1 < len && rest[i + 1] == '.'))
            return 0;
    *path_len = i;
    if (i == len)
        return 1;
    if (i + 1 == len) /* an empty query */
        return 0;
    for (i++; i < len; i++)
        if (!(PLAIN[(unsigned char)rest[i]] & QUERY))
            return 0;
    return 1;
}

/* Whether part (from curl_url_get, freed here) is the len bytes at want;
 * want NULL: whether there is no part. */
static int same_part(char *part, const char *want, size_t len)
{
    int same = want == NULL ? part == NULL
                            : part != NULL && strlen(part) == len && memcmp(part, want, len) == 0;
    curl_free(part);
    return same;
}

/* Parses url into e->url and remembers its origin, if libcurl keeps its
 * path and query as they are; 1 if so. */
static int parse_origin(psg_easy *e, const char *url, size_t origin, const char *path,
                        size_t path_len, const char *query)
{
    char *part = NULL;
    free(e->origin);
    e->origin = NULL;
    e->origin_len = 0;
    if (e->url == NULL && (e->url = curl_url()) == NULL)
        return 0;
    /* The flags libcurl parses a URL string with. */
    if (curl_url_set(e->url, CURLUPART_URL, url, CURLU_GUESS_SCHEME | CURLU_NON_SUPPORT_SCHEME) !=
        CURLUE_OK)
        return 0;
    curl_url_get(e->url, CURLUPART_PATH, &part, 0);
    if (!same_part(part, path, path_len))
        return 0;
    part = NULL;
    curl_url_get(e->url, CURLUPART_QUERY, &part, 0);
    if (!same_part(part, query, query != NULL ? strlen(query) : 0))
        return 0;
    if ((e->origin = (char *)malloc(origin)) == NULL)
        return 0;
    memcpy(e->origin, url, origin);
    e->origin_len = origin;
    return 1;
}

/* The length of the origin e remembers, if url starts with it and a "/";
 * else 0. That is url's origin: the one remembered holds no "/" after its
 * "://". */
static size_t known_origin(const psg_easy *e, const char *url, size_t len)
{
    size_t n = e->origin_len;
    return e->origin != NULL && len > n && url[n] == '/' && memcmp(url, e->origin, n) == 0 ? n : 0;
}

/* Puts url into e->url: 1 if it holds it now, 0 if url goes as a string. */
static int parse_into(psg_easy *e, const char *url, size_t len)
{
    size_t known = known_origin(e, url, len), path_len;
    size_t origin = known > 0 ? known : origin_length(url, len);
    const char *path = url + origin, *query;
    char copy[PATH_COPY_MAX];
    if (origin == 0 || !plain_rest(path, len - origin, &path_len))
        return 0;
    query = origin + path_len < len ? path + path_len + 1 : NULL;
    if (query != NULL) {
        if (path_len >= PATH_COPY_MAX)
            return 0;
        memcpy(copy, path, path_len);
        copy[path_len] = '\0';
        path = copy;
    }
    if (known == 0)
        return parse_origin(e, url, origin, path, path_len, query);
    return curl_url_set(e->url, CURLUPART_PATH, path, 0) == CURLUE_OK &&
           curl_url_set(e->url, CURLUPART_QUERY, query, 0) == CURLUE_OK;
}

CURLcode psg_easy_set_url(psg_easy *e, const char *url, size_t len)
{
    CURLcode rc = curl_easy_setopt(e->curl, CURLOPT_URL, url);
    if (rc == CURLE_OK)
        rc = curl_easy_setopt(e->curl, CURLOPT_CURLU, parse_into(e, url, len) ? e->url : NULL);
    return rc;
}

void psg_easy_free_url(psg_easy *e)
{
    curl_url_cleanup(e->url);
    free(e->origin);
    e->url = NULL;
    e->origin = NULL;
}

#else /* a libcurl before 7.63: URLs go as strings */

CURLcode psg_easy_set_url(psg_easy *e, const char *url, size_t len)
{
    (void)len;
    return curl_easy_setopt(e->curl, CURLOPT_URL, url);
}

void psg_easy_free_url(psg_easy *e)
{
    (void)e;
}

#endif
