/* Object sizes: fixed, uniform (inclusive) and clamped lognormal, as in the original tool. */
#include <math.h>
#include <stdint.h>

#include "wl/config.h"
#include "wl/datagen.h"

const char *wl_op_name(wl_op_kind_t op)
{
    static const char *const names[WL_OP__COUNT] = {"GET",    "PUT",   "LIST", "STAT",
                                                    "DELETE", "MKDIR", "RMDIR"};
    if ((unsigned)op >= WL_OP__COUNT)
        return "?";
    return names[op];
}

/* Lognormal parameters from linear-space mean and standard deviation. */
static void lognormal_params(const wl_size_spec_t *s, double *mu, double *sigma)
{
    double mean = s->mean > 0 ? s->mean : 1.0;
    double sd = s->std_dev > 0 ? s->std_dev : 0.0;
    double s2 = log1p((sd * sd) / (mean * mean));
    *mu = log(mean) - s2 / 2.0;
    *sigma = sqrt(s2);
}

static uint64_t clamp_d(double x, uint64_t lo, uint64_t hi)
{
    if (!(x == x) || x <= (double)lo)
        return lo; /* NaN or below */
    if (x >= (double)hi)
        return hi; /* also covers x beyond 2^64 */
    uint64_t v = (uint64_t)x;
    if (v < lo)
        v = lo;
    if (v > hi)
        v = hi;
    return v;
}

uint64_t wl_size_sample(const wl_size_spec_t *s, wl_rng_t *rng)
{
    switch (s->kind) {
    case WL_SIZE_FIXED:
        return s->fixed;
    case WL_SIZE_UNIFORM: {
        if (s->max <= s->min)
            return s->min;
        uint64_t span = s->max - s->min;
        if (span == UINT64_MAX)
            return wl_rng_next(rng);
        return s->min + wl_rng_below(rng, span + 1);
    }
    case WL_SIZE_LOGNORMAL: {
        double mu, sigma;
        lognormal_params(s, &mu, &sigma);
        double u1 = 1.0 - wl_rng_double(rng); /* (0, 1]: log() stays finite */
        double u2 = wl_rng_double(rng);
        double z = sqrt(-2.0 * log(u1)) * cos(2.0 * M_PI * u2);
        uint64_t hi = s->max ? s->max : UINT64_MAX;
        return clamp_d(exp(mu + sigma * z), s->min, hi);
    }
    }
    return s->fixed;
}

uint64_t wl_size_for_index(const wl_size_spec_t *s, uint64_t set_seed, uint64_t index)
{
    if (s->kind == WL_SIZE_FIXED)
        return s->fixed;
    wl_rng_t rng;
    wl_rng_seed(&rng, wl_mix64(set_seed ^ wl_mix64(index)));
    return wl_size_sample(s, &rng);
}

/* Standard normal CDF. */
static double phi(double z)
{
    return 0.5 * erfc(-z / M_SQRT2);
}

double wl_size_mean(const wl_size_spec_t *s)
{
    switch (s->kind) {
    case WL_SIZE_FIXED:
        return (double)s->fixed;
    case WL_SIZE_UNIFORM:
        if (s->max <= s->min)
            return (double)s->min;
        return ((double)s->min + (double)s->max) / 2.0;
    case WL_SIZE_LOGNORMAL: {
        double mu, sigma;
        lognormal_params(s, &mu, &sigma);
        double a = (double)s->min, b = s->max ? (double)s->max : (double)UINT64_MAX;
        if (sigma <= 0) {
            double m = exp(mu);
            return m < a ? a : m > b ? b : m;
        }
        /* E[clamp(X, a, b)] = a P(X<a) + E[X; a<=X<=b] + b P(X>b), with
         * E[X; X<=t] = e^(mu + sigma^2/2) Phi((ln t - mu - sigma^2) / sigma). */
        double la = a > 0 ? log(a) : -INFINITY, lb = log(b);
        double em = exp(mu + sigma * sigma / 2.0);
        double pa = a > 0 ? phi((la - mu) / sigma) : 0.0;
        double pb = 1.0 - phi((lb - mu) / sigma);
        double mid = em * (phi((lb - mu - sigma * sigma) / sigma) -
                           (a > 0 ? phi((la - mu - sigma * sigma) / sigma) : 0.0));
        return a * pa + mid + b * pb;
    }
    }
    return 0;
}
