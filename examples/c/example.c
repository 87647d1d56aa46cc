/*
 * C99 caller of libeplb: plans a small workload with the refined and the DeepSeek algorithm,
 * checks every invariant of the plans, evaluates one, shows an error path, prints the plan.
 * Exits 0 when every check passes, 1 otherwise.
 *
 * Build (shared):  cc -std=c99 -Iinclude examples/c/example.c -Ltarget/release -leplb
 * Build (static):  cc -std=c99 -Iinclude examples/c/example.c target/release/libeplb.a \
 *                     -lgcc_s -lutil -lrt -lpthread -lm -ldl -lc
 * Run by tests/c_callers.rs (shared, static, sanitizers, valgrind) and tests/install.rs
 * (pkg-config).
 */
#include <stdint.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>

#include "eplb.h"

enum {
    LAYERS = 2,
    EXPERTS = 16,
    REPLICAS = 24,
    GROUPS = 4,
    NODES = 2,
    GPUS = 4,
    WIDTH = REPLICAS - EXPERTS + 1 /* always wide enough */
};

static int failures = 0;

#define CHECK(cond, ...)                                                      \
    do {                                                                      \
        if (!(cond)) {                                                        \
            fprintf(stderr, "FAILED %s:%d: %s: ", __FILE__, __LINE__, #cond); \
            fprintf(stderr, __VA_ARGS__);                                     \
            fprintf(stderr, "\n");                                            \
            failures++;                                                       \
        }                                                                     \
    } while (0)

/* Checks one plan of shape [layers][replicas] / [layers][experts] / [layers][experts][width]. */
static void check_plan(const char *name, size_t layers, size_t experts, size_t replicas,
                       size_t gpus, const int64_t *phy2log, const int64_t *logcnt,
                       const int64_t *log2phy, size_t width) {
    size_t l, e, s, k;
    size_t per_gpu = replicas / gpus;
    for (l = 0; l < layers; l++) {
        const int64_t *p2l = phy2log + l * replicas;
        const int64_t *cnt = logcnt + l * experts;
        const int64_t *l2p = log2phy + l * experts * width;
        int64_t sum = 0;
        size_t *slots_on_gpu = calloc(gpus, sizeof *slots_on_gpu);
        int64_t *seen = calloc(experts, sizeof *seen);
        if (slots_on_gpu == NULL || seen == NULL) {
            fprintf(stderr, "out of memory\n");
            exit(1);
        }
        for (e = 0; e < experts; e++) {
            CHECK(cnt[e] >= 1, "%s layer %zu: expert %zu has %lld replicas", name, l, e,
                  (long long)cnt[e]);
            CHECK((size_t)cnt[e] <= width, "%s layer %zu: expert %zu count %lld > width", name, l,
                  e, (long long)cnt[e]);
            sum += cnt[e];
        }
        CHECK(sum == (int64_t)replicas, "%s layer %zu: logcnt sums to %lld", name, l,
              (long long)sum);
        for (s = 0; s < replicas; s++) {
            int64_t x = p2l[s];
            CHECK(x >= 0 && x < (int64_t)experts, "%s layer %zu: slot %zu holds %lld", name, l, s,
                  (long long)x);
            if (x >= 0 && x < (int64_t)experts) {
                seen[x]++;
            }
            slots_on_gpu[s / per_gpu]++;
        }
        for (e = 0; e < experts; e++) {
            CHECK(seen[e] == cnt[e], "%s layer %zu: expert %zu in %lld slots, logcnt %lld", name, l,
                  e, (long long)seen[e], (long long)cnt[e]);
            for (k = 0; k < width; k++) {
                int64_t slot = l2p[e * width + k];
                if ((int64_t)k < cnt[e]) {
                    CHECK(slot >= 0 && slot < (int64_t)replicas, "%s: log2phy[%zu][%zu][%zu]=%lld",
                          name, l, e, k, (long long)slot);
                    if (slot >= 0 && slot < (int64_t)replicas) {
                        CHECK(p2l[slot] == (int64_t)e, "%s: log2phy[%zu][%zu][%zu]=%lld holds %lld",
                              name, l, e, k, (long long)slot, (long long)p2l[slot]);
                    }
                    if (k > 0) {
                        CHECK(slot > l2p[e * width + k - 1], "%s: log2phy[%zu][%zu] not ascending",
                              name, l, e);
                    }
                } else {
                    CHECK(slot == -1, "%s: log2phy[%zu][%zu][%zu]=%lld, expected -1 padding", name,
                          l, e, k, (long long)slot);
                }
            }
        }
        for (s = 0; s < gpus; s++) {
            CHECK(slots_on_gpu[s] == per_gpu, "%s layer %zu: GPU %zu holds %zu slots", name, l, s,
                  slots_on_gpu[s]);
        }
        free(slots_on_gpu);
        free(seen);
    }
}

static void print_plan(const char *name, const int64_t *phy2log, const int64_t *logcnt) {
    size_t l, s, e;
    size_t per_gpu = REPLICAS / GPUS;
    printf("%s plan\n", name);
    for (l = 0; l < LAYERS; l++) {
        printf("  layer %zu phy2log:", l);
        for (s = 0; s < REPLICAS; s++) {
            printf("%s%lld", (s % per_gpu == 0) ? " | " : " ",
                   (long long)phy2log[l * REPLICAS + s]);
        }
        printf(" |\n  layer %zu logcnt: ", l);
        for (e = 0; e < EXPERTS; e++) {
            printf(" %lld", (long long)logcnt[l * EXPERTS + e]);
        }
        printf("\n");
    }
}

int main(void) {
    float weight[LAYERS * EXPERTS];
    int64_t load[LAYERS * EXPERTS];
    int64_t phy2log[LAYERS * REPLICAS], logcnt[LAYERS * EXPERTS], log2phy[LAYERS * EXPERTS * WIDTH];
    int64_t ds_phy2log[LAYERS * REPLICAS], ds_logcnt[LAYERS * EXPERTS],
        ds_log2phy[LAYERS * EXPERTS * WIDTH];
    int64_t new_phy2log[LAYERS * REPLICAS], new_logcnt[LAYERS * EXPERTS],
        new_log2phy[LAYERS * EXPERTS * WIDTH];
    eplb_options opts;
    eplb_plan_stats stats;
    eplb_layer_stats layer_stats[LAYERS];
    eplb_migration_stats migration;
    eplb_status st;
    size_t i, len;
    char message[512];

    printf("eplb %s (header %d.%d.%d)\n", eplb_version(), EPLB_VERSION_MAJOR, EPLB_VERSION_MINOR,
           EPLB_VERSION_PATCH);

    /* Skewed loads: a few hot experts per layer. */
    for (i = 0; i < LAYERS * EXPERTS; i++) {
        load[i] = (int64_t)(10 + (i * 37) % 23 + ((i % 5 == 0) ? 60 : 0));
        weight[i] = (float)load[i];
    }

    /* 1. Refined plan (NULL options = defaults). */
    st = eplb_rebalance_experts(weight, LAYERS, EXPERTS, REPLICAS, GROUPS, NODES, GPUS, NULL,
                                phy2log, log2phy, WIDTH, logcnt);
    CHECK(st == EPLB_STATUS_OK, "rebalance: %s", eplb_status_str(st));
    if (st == EPLB_STATUS_OK) {
        check_plan("refined", LAYERS, EXPERTS, REPLICAS, GPUS, phy2log, logcnt, log2phy, WIDTH);
        print_plan("refined", phy2log, logcnt);
    }

    /* 2. DeepSeek's algorithm, integer loads. */
    eplb_options_init(&opts);
    CHECK(opts.struct_size == sizeof opts, "struct_size %zu", opts.struct_size);
    CHECK(opts.algorithm == EPLB_ALGORITHM_REFINED, "default algorithm %d", (int)opts.algorithm);
    opts.algorithm = EPLB_ALGORITHM_DEEPSEEK;
    st = eplb_rebalance_experts_i64(load, LAYERS, EXPERTS, REPLICAS, GROUPS, NODES, GPUS, &opts,
                                    ds_phy2log, ds_log2phy, WIDTH, ds_logcnt);
    CHECK(st == EPLB_STATUS_OK, "deepseek: %s", eplb_status_str(st));
    if (st == EPLB_STATUS_OK) {
        check_plan("deepseek", LAYERS, EXPERTS, REPLICAS, GPUS, ds_phy2log, ds_logcnt, ds_log2phy,
                   WIDTH);
        print_plan("deepseek", ds_phy2log, ds_logcnt);
    }

    /* 3. Evaluate both; the refined plan is never worse than DeepSeek's. */
    {
        double refined_max = 0.0, deepseek_max = 0.0;
        memset(&stats, 0, sizeof stats);
        stats.struct_size = sizeof stats;
        st = eplb_evaluate_plan(weight, LAYERS, EXPERTS, REPLICAS, GROUPS, NODES, GPUS, phy2log,
                                logcnt, NULL, NULL, &stats, layer_stats);
        CHECK(st == EPLB_STATUS_OK, "evaluate: %s", eplb_status_str(st));
        CHECK(stats.balancedness > 0.0 && stats.balancedness <= 1.0, "balancedness %f",
              stats.balancedness);
        CHECK(stats.gap >= -1e-9, "gap %f", stats.gap);
        for (i = 0; i < LAYERS; i++) {
            refined_max += layer_stats[i].max_gpu_load;
        }
        printf("refined:  balancedness %.4f, gap to lower bound %.4f\n", stats.balancedness,
               stats.gap);
        st = eplb_evaluate_plan_i64(load, LAYERS, EXPERTS, REPLICAS, GROUPS, NODES, GPUS,
                                    ds_phy2log, ds_logcnt, NULL, NULL, &stats, layer_stats);
        CHECK(st == EPLB_STATUS_OK, "evaluate deepseek: %s", eplb_status_str(st));
        for (i = 0; i < LAYERS; i++) {
            deepseek_max += layer_stats[i].max_gpu_load;
        }
        printf("deepseek: balancedness %.4f, gap to lower bound %.4f\n", stats.balancedness,
               stats.gap);
        CHECK(refined_max <= deepseek_max * (1.0 + 1e-6), "refined %f worse than deepseek %f",
              refined_max, deepseek_max);
    }

    /* 4. Re-plan from the DeepSeek plan: migration statistics. */
    memset(&migration, 0, sizeof migration);
    migration.struct_size = sizeof migration;
    st = eplb_replan_experts(weight, LAYERS, EXPERTS, REPLICAS, GROUPS, NODES, GPUS, NULL,
                             ds_phy2log, new_phy2log, new_log2phy, WIDTH, new_logcnt, &migration);
    CHECK(st == EPLB_STATUS_OK, "replan: %s", eplb_status_str(st));
    if (st == EPLB_STATUS_OK) {
        check_plan("replan", LAYERS, EXPERTS, REPLICAS, GPUS, new_phy2log, new_logcnt, new_log2phy,
                   WIDTH);
        CHECK(migration.weights_moved <= migration.weights_total, "moved %zu of %zu",
              migration.weights_moved, migration.weights_total);
        printf("replan from the deepseek plan moves %zu of %zu expert weights\n",
               migration.weights_moved, migration.weights_total);
    }

    /* 5. An error path: 24 slots cannot be split over 5 GPUs. Outputs stay untouched. */
    {
        for (i = 0; i < LAYERS * REPLICAS; i++) {
            new_phy2log[i] = 12345;
        }
        st = eplb_rebalance_experts(weight, LAYERS, EXPERTS, REPLICAS, GROUPS, NODES, 5, NULL,
                                    new_phy2log, new_log2phy, WIDTH, new_logcnt);
        CHECK(st == EPLB_STATUS_NOT_DIVISIBLE, "status %d", (int)st);
        len = eplb_last_error_message(NULL, 0); /* ask for the length first */
        CHECK(len > 0, "empty error message");
        CHECK(eplb_last_error_message(message, sizeof message) == len, "length changed");
        printf("expected error: status %d (%s): %s\n", (int)st, eplb_status_str(st), message);
        for (i = 0; i < LAYERS * REPLICAS; i++) {
            CHECK(new_phy2log[i] == 12345, "output written on error at %zu", i);
        }
        /* Truncation: a short buffer gets a NUL-terminated prefix and the full length back. */
        {
            char small[8];
            size_t full = eplb_last_error_message(small, sizeof small);
            CHECK(full == len, "length %zu then %zu", len, full);
            CHECK(strlen(small) == sizeof small - 1, "truncated to %zu", strlen(small));
        }
    }

    if (failures != 0) {
        fprintf(stderr, "%d check(s) failed\n", failures);
        return 1;
    }
    printf("all checks passed\n");
    return 0;
}
