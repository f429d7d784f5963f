/*
 * The raw libcurl loop the call benchmark (bench/calls.lua) compares the
 * client against: N GETs of one URL on one reused easy handle (keep-alive),
 * with the header lines given (bench/calls.lua gives those passage.users
 * sends), each body appended to a buffer and dropped unparsed.
 *
 *   build/bench/raw_curl [-o FILE] URL N HEADER...
 *
 * One untimed request first opens the connection; then prints
 *   cpu_us_per_request <us> bytes <body bytes of the last response> libcurl <version>
 * where CPU is getrusage(RUSAGE_SELF) user + system time over the N timed
 * requests. -o writes the last body to FILE (how the benchmark gets the
 * exact bytes it feeds the decoders). Exits non-zero on any transfer error
 * or non-2xx status.
 */
#include <curl/curl.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/resource.h>
#include <sys/time.h>

typedef struct sink {
    char *data;
    size_t len, cap;
} sink;

static size_t write_cb(char *ptr, size_t size, size_t nmemb, void *userdata)
{
    sink *s = (sink *)userdata;
    size_t n = size * nmemb;
    if (s->len + n > s->cap) {
        size_t cap = s->cap ? s->cap : 4096;
        char *p;
        while (cap < s->len + n)
            cap *= 2;
        p = (char *)realloc(s->data, cap);
        if (p == NULL)
            return 0;
        s->data = p;
        s->cap = cap;
    }
    memcpy(s->data + s->len, ptr, n);
    s->len += n;
    return n;
}

static double cpu_us(void)
{
    struct rusage ru;
    getrusage(RUSAGE_SELF, &ru);
    return (double)(ru.ru_utime.tv_sec + ru.ru_stime.tv_sec) * 1e6 +
           (double)(ru.ru_utime.tv_usec + ru.ru_stime.tv_usec);
}

static int get(CURL *easy, sink *s)
{
    long status = 0;
    CURLcode rc;
    s->len = 0; /* the previous body is discarded, the buffer kept */
    rc = curl_easy_perform(easy);
    if (rc != CURLE_OK) {
        fprintf(stderr, "raw_curl: %s\n", curl_easy_strerror(rc));
        return 0;
    }
    curl_easy_getinfo(easy, CURLINFO_RESPONSE_CODE, &status);
    if (status < 200 || status > 299) {
        fprintf(stderr, "raw_curl: HTTP status %ld\n", status);
        return 0;
    }
    return 1;
}

int main(int argc, char **argv)
{
    struct curl_slist *headers = NULL;
    sink s = {NULL, 0, 0};
    const char *out = NULL;
    CURL *easy;
    long n, i;
    int h;
    double t0, t1;

    if (argc > 2 && strcmp(argv[1], "-o") == 0) {
        out = argv[2];
        argc -= 2;
        argv += 2;
    }
    if (argc < 3 || (n = strtol(argv[2], NULL, 10)) < 1) {
        fprintf(stderr, "usage: raw_curl [-o FILE] URL N HEADER...\n");
        return 2;
    }
    if (curl_global_init(CURL_GLOBAL_DEFAULT) != CURLE_OK || (easy = curl_easy_init()) == NULL)
        return 1;
    for (h = 3; h < argc; h++)
        headers = curl_slist_append(headers, argv[h]);
    curl_easy_setopt(easy, CURLOPT_URL, argv[1]);
    curl_easy_setopt(easy, CURLOPT_HTTPHEADER, headers);
    curl_easy_setopt(easy, CURLOPT_NOSIGNAL, 1L);
    curl_easy_setopt(easy, CURLOPT_TCP_KEEPALIVE, 1L);
    curl_easy_setopt(easy, CURLOPT_WRITEFUNCTION, write_cb);
    curl_easy_setopt(easy, CURLOPT_WRITEDATA, (void *)&s);

    if (!get(easy, &s)) /* opens the connection, untimed */
        return 1;
    t0 = cpu_us();
    for (i = 0; i < n; i++) {
        if (!get(easy, &s))
            return 1;
    }
    t1 = cpu_us();
    if (out != NULL) {
        FILE *f = fopen(out, "wb");
        if (f == NULL || fwrite(s.data, 1, s.len, f) != s.len || fclose(f) != 0) {
            fprintf(stderr, "raw_curl: cannot write %s\n", out);
            return 1;
        }
    }
    printf("cpu_us_per_request %.3f bytes %lu libcurl %s\n", (t1 - t0) / (double)n,
           (unsigned long)s.len, curl_version_info(CURLVERSION_NOW)->version);

    curl_slist_free_all(headers);
    curl_easy_cleanup(easy);
    curl_global_cleanup();
    free(s.data);
    return 0;
}
