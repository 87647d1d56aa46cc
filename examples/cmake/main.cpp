// Plans 4 experts onto 6 slots on 2 GPUs through the C++ wrapper of an installed libeplb.
#include <eplb.hpp>

#include <cstdio>
#include <vector>

int main() {
    const std::vector<float> load = {90, 10, 40, 20};  // [layers=1][experts=4]
    try {
        const eplb::Plan plan = eplb::rebalance_experts(load, 1, 4, 6, 1, 1, 2);
        std::printf("eplb %s phy2log:", eplb::version());
        for (std::int64_t e : plan.phy2log()) std::printf(" %lld", static_cast<long long>(e));
        std::printf("\n");
        return plan.logcnt(0, 0) >= 2 ? 0 : 1;  // the hot expert 0 gets a replica
    } catch (const eplb::Error &e) {
        std::fprintf(stderr, "%s (status %d)\n", e.what(), static_cast<int>(e.status()));
        return 1;
    }
}
