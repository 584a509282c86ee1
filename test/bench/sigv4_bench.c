/* Client CPU cost of signing one S3 request (SigV4, signing key cached, UNSIGNED-PAYLOAD): the
 * exact path s3.c takes per request (sto_s3_request_build), timed over many iterations.
 * A benchmark, not a test: test/bench/http.sh runs it. usage: sigv4_bench [ITERATIONS] */
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <time.h>

#include "sto/s3req.h"

static double now_s(void)
{
    struct timespec ts;
    clock_gettime(CLOCK_PROCESS_CPUTIME_ID, &ts);
    return (double)ts.tv_sec + (double)ts.tv_nsec / 1e9;
}

int main(int argc, char **argv)
{
    long n = argc > 1 ? atol(argv[1]) : 200000;
    if (n <= 0)
        n = 200000;
    sto_s3_endpoint_t e;
    sto_s3_creds_t c;
    memset(&e, 0, sizeof(e));
    memset(&c, 0, sizeof(c));
    snprintf(e.host, sizeof(e.host), "127.0.0.1");
    e.port = 9000;
    snprintf(e.region, sizeof(e.region), "us-east-1");
    snprintf(c.access_key, sizeof(c.access_key), "AKIDEXAMPLE");
    snprintf(c.secret_key, sizeof(c.secret_key), "wJalrXUtnFEMI/K7MDENG+bPxRfiCYEXAMPLEKEY");
    sto_sigv4_cache_t cache;
    sto_sigv4_cache_init(&cache);
    static sto_s3_request_t out;
    char key[64], err[128];
    sto_s3_req_in_t in;
    memset(&in, 0, sizeof(in));
    in.method = "PUT";
    in.bucket = "bench";
    in.content_length = -1;
    in.payload_hash = STO_SIGV4_UNSIGNED_PAYLOAD;
    in.time = (int64_t)time(NULL);
    double t0 = now_s();
    for (long i = 0; i < n; i++) {
        snprintf(key, sizeof(key), "run1/put/obj-%08ld.dat", i);
        in.key = key;
        if (sto_s3_request_build(&e, &c, &cache, &in, &out, err, sizeof(err)) != 0) {
            fprintf(stderr, "sigv4_bench: %s\n", err);
            return 1;
        }
    }
    double dt = now_s() - t0;
    printf("%.2f\n", dt / (double)n * 1e6);
    return 0;
}
