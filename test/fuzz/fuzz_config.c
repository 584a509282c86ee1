/* libFuzzer target: the YAML config loader, plus the plan formatter on what it accepts. */
#include <stddef.h>
#include <stdint.h>
#include <stdlib.h>

#include "wl/config.h"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size);

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    wl_config_t c;
    wl_diags_t d;
    wl_diags_init(&d);
    if (wl_config_load_string("fuzz.yaml", (const char *)data, size, &c, &d) == 0) {
        char buf[256];
        for (size_t i = 0; i < c.nops; i++)
            (void)wl_config_op_uri(&c, &c.ops[i], buf, sizeof(buf));
        char *plan = wl_plan_format(&c, 3);
        free(plan);
        wl_config_free(&c);
    } else {
        char line[512];
        for (size_t i = 0; i < d.n; i++)
            wl_diag_format(&d, i, line, sizeof(line));
    }
    wl_diags_free(&d);
    return 0;
}
