/*
 * fuzz_config.c - libFuzzer target for the config file parser
 * (src/config.c: apply_text, validate, the SIGHUP diff and --print-config),
 * with a seed corpus in tests/fuzz/corpus/config/.
 *
 * Built in the fuzz build (-DSOFAAS_FUZZ=ON) and run by tests/fuzz/run.sh
 * (`tests/fuzz/run.sh config`); docs/testing.md has the details.
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "../../src/config.c"

int LLVMFuzzerTestOneInput(const uint8_t *data, size_t size)
{
    static FILE *devnull;
    sf_config c, d;
    char *text = malloc(size + 1);
    cJSON *j;

    if (text == NULL)
        return 0;
    if (devnull == NULL)
        devnull = fopen("/dev/null", "w");
    memcpy(text, data, size);
    text[size] = '\0';
    memset(&c, 0, sizeof(c));
    memset(&d, 0, sizeof(d));
    if (set_defaults(&c) == 0 && set_defaults(&d) == 0) {
        /* Whatever the input, the result is either rejected or a config
         * every other function accepts. */
        if (apply_text(&c, text, "fuzz", devnull) == 0 &&
            validate(&c, "fuzz", devnull) == 0) {
            sf_config_diff(&d, &c, NULL, NULL);
            sf_config_keep_restart_keys(&c, &d);
            if (sf_config_diff(&d, &c, NULL, NULL) != 0)
                abort(); /* restart keys must all have been copied back */
            j = sf_config_to_json(&c);
            cJSON_Delete(j);
        }
    }
    sf_config_clear(&c);
    sf_config_clear(&d);
    free(text);
    return 0;
}
