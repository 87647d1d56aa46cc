//! A packing with fixed pack sizes: `per_pack` item slots per pack, stored flat.

/// Items assigned to packs of exactly `per_pack` items each.
#[derive(Debug, Clone, Default)]
pub struct PackState {
    /// Items per pack.
    pub per_pack: usize,
    /// `num_packs * per_pack` item ids; pack `p` holds `slots[p * per_pack..(p + 1) * per_pack]`.
    pub slots: Vec<u32>,
    /// Sum of item weights per pack.
    pub loads: Vec<f64>,
    /// Scratch of [`PackState::assign_from`].
    fill: Vec<u32>,
}

impl PackState {
    /// Number of packs.
    pub fn num_packs(&self) -> usize {
        self.loads.len()
    }

    /// The items of pack `p`.
    pub fn items(&self, p: usize) -> &[u32] {
        &self.slots[p * self.per_pack..(p + 1) * self.per_pack]
    }

    /// Empties the state into `num_packs` packs of `num_items / num_packs` slots (all item 0, loads
    /// 0) for a construction to fill.
    pub fn reset(&mut self, num_items: usize, num_packs: usize) {
        self.per_pack = num_items / num_packs;
        self.slots.clear();
        self.slots.resize(num_items, 0);
        self.loads.clear();
        self.loads.resize(num_packs, 0.0);
    }

    /// Rebuilds the state from each item's pack; `pack_of` must give every pack `per_pack` items.
    pub fn assign_from(&mut self, pack_of: &[u32], weights: &[f64], num_packs: usize) {
        self.per_pack = pack_of.len() / num_packs;
        self.loads.clear();
        self.loads.resize(num_packs, 0.0);
        self.slots.clear();
        self.slots.resize(pack_of.len(), u32::MAX);
        self.fill.clear();
        self.fill.resize(num_packs, 0);
        for (item, &p) in pack_of.iter().enumerate() {
            let p = p as usize;
            self.slots[p * self.per_pack + self.fill[p] as usize] = item as u32;
            self.fill[p] += 1;
        }
        self.recompute_loads(weights);
    }

    /// Recomputes every pack load from scratch (removes drift from incremental updates).
    pub fn recompute_loads(&mut self, weights: &[f64]) {
        for p in 0..self.loads.len() {
            let start = p * self.per_pack;
            self.loads[p] = self.slots[start..start + self.per_pack]
                .iter()
                .map(|&i| weights[i as usize])
                .sum();
        }
    }

    /// The heaviest pack (lowest index on ties) and its load.
    pub fn heaviest(&self) -> (usize, f64) {
        let mut best = 0;
        for p in 1..self.loads.len() {
            if self.loads[p] > self.loads[best] {
                best = p;
            }
        }
        (best, self.loads[best])
    }

    /// The largest pack load.
    pub fn max_load(&self) -> f64 {
        self.heaviest().1
    }

    /// Exchanges the items at flat positions `a` and `b` (in different packs).
    pub fn swap_positions(&mut self, a: usize, b: usize, weights: &[f64]) {
        let (pa, pb) = (a / self.per_pack, b / self.per_pack);
        let (wa, wb) = (
            weights[self.slots[a] as usize],
            weights[self.slots[b] as usize],
        );
        self.slots.swap(a, b);
        self.loads[pa] += wb - wa;
        self.loads[pb] += wa - wb;
    }

    /// Whether pack `p` holds an item of `color`, ignoring the item at flat position `except`.
    pub fn has_color(&self, p: usize, color: u32, colors: &[u32], except: usize) -> bool {
        let start = p * self.per_pack;
        (start..start + self.per_pack)
            .any(|pos| pos != except && colors[self.slots[pos] as usize] == color)
    }

    /// Number of items that share their pack with an earlier item of the same color. `seen` is
    /// scratch space (resized as needed).
    pub fn duplicates(&self, colors: &[u32], seen: &mut Vec<u32>) -> usize {
        let num_colors = colors.iter().copied().max().map_or(0, |c| c as usize + 1);
        seen.clear();
        seen.resize(num_colors, u32::MAX);
        let mut count = 0;
        for p in 0..self.num_packs() {
            for &item in self.items(p) {
                let c = colors[item as usize] as usize;
                if seen[c] == p as u32 {
                    count += 1;
                }
                seen[c] = p as u32;
            }
        }
        count
    }

    /// Writes each item's pack and its position inside the pack.
    pub fn write_assignment(&self, pack_of: &mut [u32], rank: &mut [u32]) {
        if self.per_pack == 0 {
            return;
        }
        for (p, items) in self.slots.chunks_exact(self.per_pack).enumerate() {
            for (r, &item) in items.iter().enumerate() {
                pack_of[item as usize] = p as u32;
                rank[item as usize] = r as u32;
            }
        }
    }
}
