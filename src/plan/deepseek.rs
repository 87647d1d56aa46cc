//! DeepSeek's `rebalance_experts`, bit-exact: groups to nodes by greedy packing of group loads,
//! greedy replication inside each node, greedy packing of replicas onto the node's GPUs, all in f32.

use crate::load::{Load, row_to_f32};
use crate::packing::greedy::{GreedyScratch, greedy_pack};
use crate::replication::{ReplicationScratch, replicate_greedy};
use crate::shape::Shape;

/// Reusable buffers of the DeepSeek planner.
#[derive(Debug, Default)]
pub struct DeepSeekPlanner {
    row: Vec<f32>,
    group_loads: Vec<f32>,
    group_pack: Vec<u32>,
    group_rank: Vec<u32>,
    pack_loads: Vec<f32>,
    /// Node-major expert order: `mlog2log[n * E/N + j]` is the j-th expert of node n.
    pub(crate) mlog2log: Vec<u32>,
    node_loads: Vec<f32>,
    phy2mlog: Vec<u32>,
    replica_rank: Vec<u32>,
    mlogcnt: Vec<u32>,
    replica_loads: Vec<f32>,
    gpu_of: Vec<u32>,
    rank_in_gpu: Vec<u32>,
    greedy: GreedyScratch<f32>,
    replication: ReplicationScratch<f32>,
}

impl DeepSeekPlanner {
    /// Plans one layer into `phy2log` (`R` entries), `logcnt` (`E`) and `group_node` (`G`; -1 under
    /// the global policy). Returns the f32 load of the heaviest node (what DeepSeek's node split
    /// achieved). Precondition: loads are valid and their f32 sums are finite.
    pub fn plan_layer<L: Load>(
        &mut self,
        loads: &[L],
        shape: &Shape,
        phy2log: &mut [i64],
        logcnt: &mut [i64],
        group_node: &mut [i64],
    ) -> f32 {
        row_to_f32(loads, &mut self.row);
        let e = shape.num_logical;
        let (g, n) = shape.effective_groups_nodes();
        let group_size = e / g;
        let groups_per_node = g / n;
        let experts_per_node = e / n;
        let slots_per_node = shape.num_replicas / n;
        let gpus_per_node = shape.num_gpus / n;
        let k = shape.slots_per_gpu();

        // Step 1: groups to nodes.
        self.group_loads.clear();
        self.group_loads.extend(
            self.row
                .chunks_exact(group_size)
                .map(|c| c.iter().map(|&v| f64::from(v)).sum::<f64>() as f32),
        );
        self.group_pack.resize(g, 0);
        self.group_rank.resize(g, 0);
        greedy_pack(
            &self.group_loads,
            n,
            &mut self.greedy,
            &mut self.pack_loads,
            &mut self.group_pack,
            &mut self.group_rank,
        );
        let heaviest_node = self.pack_loads.iter().copied().fold(0.0f32, f32::max);
        self.mlog2log.resize(e, 0);
        for group in 0..g {
            let base = (self.group_pack[group] as usize * groups_per_node
                + self.group_rank[group] as usize)
                * group_size;
            for j in 0..group_size {
                self.mlog2log[base + j] = (group * group_size + j) as u32;
            }
        }
        if shape.num_groups % shape.num_nodes == 0 {
            for (dst, &p) in group_node.iter_mut().zip(&self.group_pack) {
                *dst = i64::from(p);
            }
        } else {
            group_node.fill(-1);
        }

        self.phy2mlog.resize(slots_per_node, 0);
        self.replica_rank.resize(slots_per_node, 0);
        self.mlogcnt.resize(experts_per_node, 0);
        self.gpu_of.resize(slots_per_node, 0);
        self.rank_in_gpu.resize(slots_per_node, 0);
        let mlog2log = std::mem::take(&mut self.mlog2log);
        for node in 0..n {
            let experts = &mlog2log[node * experts_per_node..(node + 1) * experts_per_node];
            // Steps 2 and 3: replicate inside the node, pack its replicas onto its GPUs.
            self.plan_node(experts, gpus_per_node);
            let slot_base = node * slots_per_node;
            for i in 0..slots_per_node {
                let slot = slot_base + self.gpu_of[i] as usize * k + self.rank_in_gpu[i] as usize;
                phy2log[slot] = i64::from(experts[self.phy2mlog[i] as usize]);
            }
            for (j, &x) in experts.iter().enumerate() {
                logcnt[x as usize] = i64::from(self.mlogcnt[j]);
            }
        }
        self.mlog2log = mlog2log;
        heaviest_node
    }

    /// Steps 2 and 3 for one node whose experts, in DeepSeek's order, are `experts`: fills
    /// `phy2mlog`, `mlogcnt`, `gpu_of` and `rank_in_gpu` (all node-local). `self.row` holds the
    /// layer's f32 loads; `phy2mlog` is sized to the node's slots.
    fn plan_node(&mut self, experts: &[u32], gpus_per_node: usize) {
        self.node_loads.clear();
        self.node_loads
            .extend(experts.iter().map(|&x| self.row[x as usize]));
        replicate_greedy(
            &self.node_loads,
            u32::MAX,
            &mut self.replication,
            &mut self.phy2mlog,
            &mut self.replica_rank,
            &mut self.mlogcnt,
        );
        self.replica_loads.clear();
        self.replica_loads.extend(
            self.phy2mlog
                .iter()
                .map(|&j| self.node_loads[j as usize] / self.mlogcnt[j as usize] as f32),
        );
        greedy_pack(
            &self.replica_loads,
            gpus_per_node,
            &mut self.greedy,
            &mut self.pack_loads,
            &mut self.gpu_of,
            &mut self.rank_in_gpu,
        );
    }

    /// Sets the layer whose nodes [`DeepSeekPlanner::plan_single_node`] plans.
    pub fn set_row<L: Load>(&mut self, loads: &[L]) {
        row_to_f32(loads, &mut self.row);
    }

    /// DeepSeek's plan for one node whose experts, in DeepSeek's order, are `experts`: returns each
    /// node-local slot's expert position in `experts`, each expert's count, each slot's GPU and its
    /// position on that GPU. Call [`DeepSeekPlanner::set_row`] with the layer's loads first.
    pub fn plan_single_node(
        &mut self,
        experts: &[u32],
        slots_per_node: usize,
        gpus_per_node: usize,
    ) -> NodePlan<'_> {
        self.phy2mlog.resize(slots_per_node, 0);
        self.replica_rank.resize(slots_per_node, 0);
        self.mlogcnt.resize(experts.len(), 0);
        self.gpu_of.resize(slots_per_node, 0);
        self.rank_in_gpu.resize(slots_per_node, 0);
        self.plan_node(experts, gpus_per_node);
        NodePlan {
            phy2mlog: &self.phy2mlog,
            mlogcnt: &self.mlogcnt,
            gpu_of: &self.gpu_of,
            rank_in_gpu: &self.rank_in_gpu,
            by_weight: self.greedy.order(),
        }
    }
}

/// DeepSeek's plan of one node, node-local (see [`DeepSeekPlanner::plan_single_node`]).
#[derive(Debug, Clone, Copy)]
pub struct NodePlan<'a> {
    /// Each slot's expert, as a position in the node's expert list.
    pub phy2mlog: &'a [u32],
    /// Each expert's replica count.
    pub mlogcnt: &'a [u32],
    /// Each slot's GPU in the node.
    pub gpu_of: &'a [u32],
    /// Each slot's position on its GPU.
    pub rank_in_gpu: &'a [u32],
    /// The slots by replica load descending (on f32 loads: DeepSeek's packing order); empty with
    /// one slot per GPU.
    pub by_weight: &'a [u32],
}
