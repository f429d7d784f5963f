/*
 * JSON numbers (json_number.h). The grammar is checked here, byte by byte;
 * the value is taken from up to 19 significant digits in a uint64. Integers
 * without fraction or exponent that fit become Lua integers. Other numbers
 * with at most 15..16 significant digits (< 2^53) and |exponent| <= 22 are
 * exact doubles multiplied or divided by an exact power of ten: one
 * correctly rounded operation (Clinger's fast path). Everything else goes
 * to strtod with the locale's decimal point.
 */
#include <errno.h>
#include <float.h>
#include <locale.h>
#include <math.h>
#include <stdlib.h>
#include <string.h>

#include "json_number.h"

static const double pow10_exact[23] = {1e0,  1e1,  1e2,  1e3,  1e4,  1e5,  1e6,  1e7,
                                       1e8,  1e9,  1e10, 1e11, 1e12, 1e13, 1e14, 1e15,
                                       1e16, 1e17, 1e18, 1e19, 1e20, 1e21, 1e22};

#define IS_DIGIT(c) ((unsigned)((c) - '0') < 10u)

/* What the scan learned: the value is (neg ? -1 : 1) * m * 10^exp10, exact
 * unless digits past the 19th were dropped (inexact). */
typedef struct number_parts {
    uint64_t m;
    long exp10;
    int neg, ndig, is_int, inexact;
} number_parts;

static int fail(psg_json_number *out, const char *at, const char *why)
{
    out->failed = at;
    out->why = why;
    return 0;
}

/* The digits before any '.', with no leading zero. Returns the next byte,
 * or NULL after fail(). */
static const char *scan_integer(const char *p, const char *end, number_parts *n,
                                psg_json_number *out)
{
    if (p < end && *p == '0') {
        p++;
        if (p < end && IS_DIGIT(*p))
            return fail(out, p, "invalid number (leading zero)"), NULL;
        return p;
    }
    if (!(p < end && IS_DIGIT(*p)))
        return fail(out, p, "invalid number"), NULL;
    do {
        if (n->ndig < 19) {
            n->m = n->m * 10 + (uint64_t)(*p - '0');
            n->ndig++;
        } else {
            n->exp10++; /* digit dropped: the value is m * 10^exp10 */
            n->inexact = 1;
        }
        p++;
    } while (p < end && IS_DIGIT(*p));
    return p;
}

/* A '.' and its digits, if there. Returns the next byte, or NULL. */
static const char *scan_fraction(const char *p, const char *end, number_parts *n,
                                 psg_json_number *out)
{
    if (!(p < end && *p == '.'))
        return p;
    p++;
    n->is_int = 0;
    if (p >= end || !IS_DIGIT(*p))
        return fail(out, p, "invalid number"), NULL;
    do {
        if (n->ndig < 19) {
            if (n->m != 0 || *p != '0') {
                n->m = n->m * 10 + (uint64_t)(*p - '0');
                n->ndig++;
            }
            n->exp10--;
        } else if (*p != '0') {
            n->inexact = 1;
        }
        p++;
    } while (p < end && IS_DIGIT(*p));
    return p;
}

/* An exponent, if there. Returns the next byte, or NULL. */
static const char *scan_exponent(const char *p, const char *end, number_parts *n,
                                 psg_json_number *out)
{
    long e = 0;
    int eneg = 0;
    if (!(p < end && (*p == 'e' || *p == 'E')))
        return p;
    p++;
    n->is_int = 0;
    if (p < end && (*p == '+' || *p == '-')) {
        eneg = *p == '-';
        p++;
    }
    if (p >= end || !IS_DIGIT(*p))
        return fail(out, p, "invalid number"), NULL;
    do {
        if (e < 100000) /* saturate: far beyond any double */
            e = e * 10 + (*p - '0');
        p++;
    } while (p < end && IS_DIGIT(*p));
    n->exp10 += eneg ? -e : e;
    return p;
}

/* strtod on a copy of [start, stop) whose '.' is replaced by the current
 * locale's decimal point, which may be longer than one byte. */
static int convert_slow(const char *start, const char *stop, psg_buf *scratch, psg_json_number *out)
{
    const char *point = localeconv()->decimal_point;
    size_t plen = point && *point ? strlen(point) : 1;
    size_t len = (size_t)(stop - start);
    char small[128];
    char *buf = small, *w, *tail;
    const char *r;
    double v;
    if (len + plen + 1 > sizeof small) {
        scratch->len = 0;
        if (!psg_buf_reserve(scratch, len + plen + 1))
            return -1;
        buf = scratch->data;
    }
    for (r = start, w = buf; r < stop; r++) {
        if (*r == '.' && point && *point) {
            memcpy(w, point, plen);
            w += plen;
        } else {
            *w++ = *r;
        }
    }
    *w = '\0';
    errno = 0;
    v = strtod(buf, &tail);
    if (tail != w)
        return fail(out, start, "invalid number"); /* cannot happen: grammar checked */
    if (errno == ERANGE && (v == HUGE_VAL || v == -HUGE_VAL))
        return fail(out, start, "number out of range");
    out->value = v;
    return 1;
}

/* The value of the scanned number [start, stop). */
static int convert(const char *start, const char *stop, const number_parts *n, psg_buf *scratch,
                   psg_json_number *out)
{
    double v;
    if (n->is_int && !n->inexact) {
#if PSG_HAS_INTEGERS
        if (!n->neg && n->m <= (uint64_t)LUA_MAXINTEGER) {
            out->is_integer = 1;
            out->integer = (lua_Integer)n->m;
            return 1;
        }
        if (n->neg && n->m != 0 && n->m - 1 <= (uint64_t)LUA_MAXINTEGER) {
            /* -(m-1)-1 reaches the minimum integer without overflow */
            out->is_integer = 1;
            out->integer = -(lua_Integer)(n->m - 1) - 1;
            return 1;
        }
#endif
        /* "-0" stays a float so its sign survives; big integers round once */
        v = (double)n->m;
        out->value = n->neg ? -v : v;
        return 1;
    }
    if (n->m == 0 && !n->inexact) {
        out->value = n->neg ? -0.0 : 0.0;
        return 1;
    }
#if defined(FLT_EVAL_METHOD) && FLT_EVAL_METHOD == 0
    /* Intermediate results are plain doubles, so the fast path is exact. */
    if (!n->inexact && n->m <= ((uint64_t)1 << 53) && n->exp10 >= -22 && n->exp10 <= 22) {
        v = (double)n->m;
        v = n->exp10 < 0 ? v / pow10_exact[-n->exp10] : v * pow10_exact[n->exp10];
        out->value = n->neg ? -v : v;
        return 1;
    }
#endif
    return convert_slow(start, stop, scratch, out);
}

int psg_json_number_scan(const char *p, const char *end, psg_buf *scratch, psg_json_number *out)
{
    const char *start = p;
    number_parts n;
    memset(&n, 0, sizeof n);
    n.is_int = 1;
    out->is_integer = 0;
    if (*p == '-') {
        n.neg = 1;
        p++;
    }
    if ((p = scan_integer(p, end, &n, out)) == NULL ||
        (p = scan_fraction(p, end, &n, out)) == NULL ||
        (p = scan_exponent(p, end, &n, out)) == NULL)
        return 0;
    out->end = p;
    return convert(start, p, &n, scratch, out);
}
