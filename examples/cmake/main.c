/* Plans 4 experts onto 6 slots on 2 GPUs through the C API of an installed libeplb. */
#include <eplb.h>
#include <stdio.h>

int main(void) {
    const float load[4] = {90.0f, 10.0f, 40.0f, 20.0f};
    int64_t phy2log[6], logcnt[4], log2phy[4 * 3];
    eplb_status st =
        eplb_rebalance_experts(load, 1, 4, 6, 1, 1, 2, NULL, phy2log, log2phy, 3, logcnt);
    if (st != EPLB_STATUS_OK) {
        char msg[256];
        eplb_last_error_message(msg, sizeof msg);
        fprintf(stderr, "eplb: %s: %s\n", eplb_status_str(st), msg);
        return 1;
    }
    printf("eplb %s phy2log:", eplb_version());
    for (int s = 0; s < 6; s++) printf(" %lld", (long long)phy2log[s]);
    printf("\n");
    return logcnt[0] >= 2 ? 0 : 1; /* the hot expert 0 gets a replica */
}
