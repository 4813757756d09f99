//! Planarity test with a combinatorial embedding: the left-right algorithm (de Fraysseix and
//! Rosenstiehl, in Brandes' formulation "The Left-Right Planarity Test", 2009), O(V + E).
//!
//! Three depth-first passes, all iterative so deep graphs cannot overflow the stack: orient the graph
//! and compute low points; test for left-right conflicts with a stack of conflict pairs; give every
//! back edge its side and build the rotation system. Half-edge `2i` runs `edges[i].0 -> edges[i].1`,
//! `2i + 1` the other way.

const NONE: usize = usize::MAX;

/// A planar graph with a rotation system: `cw[h]` is the half-edge after `h` clockwise around the
/// source of `h`. Faces are the orbits of `h -> cw[twin(h)]`.
#[derive(Debug, Clone)]
pub struct Embedding {
    pub nodes: usize,
    pub edges: Vec<(usize, usize)>,
    pub cw: Vec<usize>,
}

impl Embedding {
    pub fn source(&self, h: usize) -> usize {
        let (u, v) = self.edges[h / 2];
        if h.is_multiple_of(2) { u } else { v }
    }

    pub fn target(&self, h: usize) -> usize {
        self.source(h ^ 1)
    }

    /// The half-edge after `h` on the face to its side.
    pub fn face_next(&self, h: usize) -> usize {
        self.cw[h ^ 1]
    }

    /// Each face as the cyclic list of its half-edges.
    pub fn faces(&self) -> Vec<Vec<usize>> {
        let mut seen = vec![false; self.cw.len()];
        let mut faces = Vec::new();
        for start in 0..self.cw.len() {
            if seen[start] {
                continue;
            }
            let mut face = Vec::new();
            let mut h = start;
            while !seen[h] {
                seen[h] = true;
                face.push(h);
                h = self.face_next(h);
            }
            faces.push(face);
        }
        faces
    }
}

#[derive(Clone, Copy, Default, PartialEq)]
struct Interval {
    low: Option<usize>,
    high: Option<usize>,
}

impl Interval {
    fn is_empty(&self) -> bool {
        self.low.is_none() && self.high.is_none()
    }
}

#[derive(Clone, Copy, Default)]
struct ConflictPair {
    left: Interval,
    right: Interval,
}

impl ConflictPair {
    fn swap(&mut self) {
        std::mem::swap(&mut self.left, &mut self.right);
    }
}

struct LeftRight<'a> {
    nodes: usize,
    edges: &'a [(usize, usize)],
    adjacency: Vec<Vec<usize>>,
    height: Vec<usize>,
    parent_edge: Vec<usize>,
    /// Half-edges leaving each vertex in the DFS orientation.
    out: Vec<Vec<usize>>,
    oriented: Vec<bool>,
    lowpt: Vec<usize>,
    lowpt2: Vec<usize>,
    nesting: Vec<i64>,
    reference: Vec<Option<usize>>,
    side: Vec<i8>,
    lowpt_edge: Vec<usize>,
    stack_bottom: Vec<usize>,
    stack: Vec<ConflictPair>,
    roots: Vec<usize>,
}

/// Test planarity of a simple graph (no self-loops, no parallel edges) and embed it when planar.
pub fn embed(nodes: usize, edges: &[(usize, usize)]) -> Option<Embedding> {
    // Euler's bound: a simple planar graph has at most 3V - 6 edges.
    if nodes >= 3 && edges.len() > 3 * nodes - 6 {
        return None;
    }
    let mut lr = LeftRight::new(nodes, edges);
    lr.orient();
    for v in 0..nodes {
        let nesting = &lr.nesting;
        lr.out[v].sort_by_key(|&h| nesting[h]);
    }
    if !lr.test() {
        return None;
    }
    Some(lr.embedding())
}

/// Whether a simple graph is planar.
pub fn is_planar(nodes: usize, edges: &[(usize, usize)]) -> bool {
    embed(nodes, edges).is_some()
}

impl<'a> LeftRight<'a> {
    fn new(nodes: usize, edges: &'a [(usize, usize)]) -> Self {
        let mut adjacency = vec![Vec::new(); nodes];
        for (i, &(u, v)) in edges.iter().enumerate() {
            adjacency[u].push(2 * i);
            adjacency[v].push(2 * i + 1);
        }
        let half = 2 * edges.len();
        LeftRight {
            nodes,
            edges,
            adjacency,
            height: vec![NONE; nodes],
            parent_edge: vec![NONE; nodes],
            out: vec![Vec::new(); nodes],
            oriented: vec![false; edges.len()],
            lowpt: vec![0; half],
            lowpt2: vec![0; half],
            nesting: vec![0; half],
            reference: vec![None; half],
            side: vec![1; half],
            lowpt_edge: vec![NONE; half],
            stack_bottom: vec![0; half],
            stack: Vec::new(),
            roots: Vec::new(),
        }
    }

    fn target(&self, h: usize) -> usize {
        let (u, v) = self.edges[h / 2];
        if h.is_multiple_of(2) { v } else { u }
    }

    fn source(&self, h: usize) -> usize {
        self.target(h ^ 1)
    }

    /// Pass 1: DFS orientation, heights, low points and nesting depths.
    fn orient(&mut self) {
        for root in 0..self.nodes {
            if self.height[root] != NONE {
                continue;
            }
            self.roots.push(root);
            self.height[root] = 0;
            let mut frames = vec![(root, 0usize)];
            while let Some(&mut (v, ref mut next)) = frames.last_mut() {
                if *next == self.adjacency[v].len() {
                    frames.pop();
                    let e = self.parent_edge[v];
                    if e != NONE {
                        self.finish_orient(self.source(e), e);
                    }
                    continue;
                }
                let h = self.adjacency[v][*next];
                *next += 1;
                if self.oriented[h / 2] {
                    continue;
                }
                self.oriented[h / 2] = true;
                self.out[v].push(h);
                self.lowpt[h] = self.height[v];
                self.lowpt2[h] = self.height[v];
                let w = self.target(h);
                if self.height[w] == NONE {
                    self.parent_edge[w] = h;
                    self.height[w] = self.height[v] + 1;
                    frames.push((w, 0));
                } else {
                    self.lowpt[h] = self.height[w];
                    self.finish_orient(v, h);
                }
            }
        }
    }

    fn finish_orient(&mut self, v: usize, h: usize) {
        self.nesting[h] = 2 * self.lowpt[h] as i64 + i64::from(self.lowpt2[h] < self.height[v]);
        let e = self.parent_edge[v];
        if e == NONE {
            return;
        }
        if self.lowpt[h] < self.lowpt[e] {
            self.lowpt2[e] = self.lowpt[e].min(self.lowpt2[h]);
            self.lowpt[e] = self.lowpt[h];
        } else if self.lowpt[h] > self.lowpt[e] {
            self.lowpt2[e] = self.lowpt2[e].min(self.lowpt[h]);
        } else {
            self.lowpt2[e] = self.lowpt2[e].min(self.lowpt2[h]);
        }
    }

    /// Pass 2: the left-right constraints; false when they conflict.
    fn test(&mut self) -> bool {
        for r in 0..self.roots.len() {
            let root = self.roots[r];
            let mut frames = vec![(root, 0usize, false)];
            while let Some(&(v, next, returning)) = frames.last() {
                let e = self.parent_edge[v];
                if returning {
                    // The tree edge out[v][next - 1] has been fully explored.
                    frames.last_mut().unwrap().2 = false;
                    if !self.after_edge(v, e, self.out[v][next - 1], next == 1) {
                        return false;
                    }
                    continue;
                }
                if next == self.out[v].len() {
                    frames.pop();
                    if e != NONE {
                        self.remove_back_edges(e);
                    }
                    continue;
                }
                let ei = self.out[v][next];
                frames.last_mut().unwrap().1 = next + 1;
                self.stack_bottom[ei] = self.stack.len();
                let w = self.target(ei);
                if self.parent_edge[w] == ei {
                    frames.last_mut().unwrap().2 = true;
                    frames.push((w, 0, false));
                } else {
                    self.lowpt_edge[ei] = ei;
                    self.stack.push(ConflictPair {
                        left: Interval::default(),
                        right: Interval { low: Some(ei), high: Some(ei) },
                    });
                    if !self.after_edge(v, e, ei, next == 0) {
                        return false;
                    }
                }
            }
        }
        true
    }

    fn after_edge(&mut self, v: usize, e: usize, ei: usize, first: bool) -> bool {
        if self.lowpt[ei] < self.height[v] {
            if first {
                self.lowpt_edge[e] = self.lowpt_edge[ei];
            } else if !self.add_constraints(ei, e) {
                return false;
            }
        }
        true
    }

    fn conflicting(&self, interval: &Interval, b: usize) -> bool {
        match interval.high {
            Some(high) => self.lowpt[high] > self.lowpt[b],
            None => false,
        }
    }

    fn lowest(&self, pair: &ConflictPair) -> usize {
        match (pair.left.low, pair.right.low) {
            (None, Some(r)) => self.lowpt[r],
            (Some(l), None) => self.lowpt[l],
            (Some(l), Some(r)) => self.lowpt[l].min(self.lowpt[r]),
            (None, None) => NONE,
        }
    }

    fn add_constraints(&mut self, ei: usize, e: usize) -> bool {
        let mut pair = ConflictPair::default();
        // Merge the return edges of ei into the right interval.
        loop {
            let Some(mut q) = self.stack.pop() else { return false };
            if !q.left.is_empty() {
                q.swap();
            }
            if !q.left.is_empty() {
                return false;
            }
            let (Some(q_low), q_high) = (q.right.low, q.right.high) else { return false };
            if self.lowpt[q_low] > self.lowpt[e] {
                if pair.right.is_empty() {
                    pair.right.high = q_high;
                } else if let Some(low) = pair.right.low {
                    self.reference[low] = q_high;
                }
                pair.right.low = Some(q_low);
            } else {
                self.reference[q_low] = Some(self.lowpt_edge[e]);
            }
            if self.stack.len() == self.stack_bottom[ei] {
                break;
            }
        }
        // Merge the return edges of earlier siblings that conflict with ei into the left interval.
        while let Some(top) = self.stack.last() {
            if !(self.conflicting(&top.left, ei) || self.conflicting(&top.right, ei)) {
                break;
            }
            let mut q = self.stack.pop().unwrap();
            if self.conflicting(&q.right, ei) {
                q.swap();
            }
            if self.conflicting(&q.right, ei) {
                return false;
            }
            if let Some(low) = pair.right.low {
                self.reference[low] = q.right.high;
            }
            if q.right.low.is_some() {
                pair.right.low = q.right.low;
            }
            if pair.left.is_empty() {
                pair.left.high = q.left.high;
            } else if let Some(low) = pair.left.low {
                self.reference[low] = q.left.high;
            }
            pair.left.low = q.left.low;
        }
        if !(pair.left.is_empty() && pair.right.is_empty()) {
            self.stack.push(pair);
        }
        true
    }

    fn remove_back_edges(&mut self, e: usize) {
        let u = self.source(e);
        while let Some(top) = self.stack.last() {
            if self.lowest(top) != self.height[u] {
                break;
            }
            let pair = self.stack.pop().unwrap();
            if let Some(low) = pair.left.low {
                self.side[low] = -1;
            }
        }
        if let Some(mut pair) = self.stack.pop() {
            self.trim(&mut pair.left, pair.right.low, u);
            self.trim(&mut pair.right, pair.left.low, u);
            self.stack.push(pair);
        }
        if self.lowpt[e] < self.height[u]
            && let Some(top) = self.stack.last()
        {
            let (hl, hr) = (top.left.high, top.right.high);
            self.reference[e] = match (hl, hr) {
                (Some(l), Some(r)) if self.lowpt[l] > self.lowpt[r] => Some(l),
                (Some(l), None) => Some(l),
                _ => hr,
            };
        }
    }

    /// Drop the back edges of `interval` that return to `u`; an interval emptied so takes its side
    /// from `other_low`, the lowest edge of the pair's other interval.
    fn trim(&mut self, interval: &mut Interval, other_low: Option<usize>, u: usize) {
        while let Some(high) = interval.high {
            if self.target(high) != u {
                break;
            }
            interval.high = self.reference[high];
        }
        if interval.high.is_none()
            && let Some(low) = interval.low
        {
            self.reference[low] = other_low;
            self.side[low] = -1;
            interval.low = None;
        }
    }

    /// Resolve the side of `h` relative to its parent's through the chain of references.
    fn sign(&mut self, h: usize) -> i8 {
        let mut chain = vec![h];
        while let Some(next) = self.reference[*chain.last().unwrap()] {
            chain.push(next);
        }
        for i in (0..chain.len() - 1).rev() {
            let (x, y) = (chain[i], chain[i + 1]);
            self.side[x] *= self.side[y];
            self.reference[x] = None;
        }
        self.side[h]
    }

    /// Pass 3: sides of the back edges, then the rotation system.
    fn embedding(mut self) -> Embedding {
        for v in 0..self.nodes {
            for k in 0..self.out[v].len() {
                let h = self.out[v][k];
                let s = i64::from(self.sign(h));
                self.nesting[h] *= s;
            }
        }
        for v in 0..self.nodes {
            let nesting = &self.nesting;
            self.out[v].sort_by_key(|&h| nesting[h]);
        }
        let mut rotation = Rotation::new(self.nodes, 2 * self.edges.len());
        for v in 0..self.nodes {
            let mut previous = None;
            for &h in &self.out[v] {
                rotation.insert_cw(v, h, previous);
                previous = Some(h);
            }
        }
        let mut left_ref = vec![NONE; self.nodes];
        let mut right_ref = vec![NONE; self.nodes];
        for r in 0..self.roots.len() {
            let mut frames = vec![(self.roots[r], 0usize)];
            while let Some(&mut (v, ref mut next)) = frames.last_mut() {
                if *next == self.out[v].len() {
                    frames.pop();
                    continue;
                }
                let ei = self.out[v][*next];
                *next += 1;
                let w = self.target(ei);
                if self.parent_edge[w] == ei {
                    rotation.insert_first(w, ei ^ 1);
                    left_ref[v] = ei;
                    right_ref[v] = ei;
                    frames.push((w, 0));
                } else if self.side[ei] == 1 {
                    rotation.insert_cw(w, ei ^ 1, Some(right_ref[w]));
                } else {
                    rotation.insert_ccw(w, ei ^ 1, Some(left_ref[w]));
                    left_ref[w] = ei ^ 1;
                }
            }
        }
        Embedding { nodes: self.nodes, edges: self.edges.to_vec(), cw: rotation.cw }
    }
}

/// Circular doubly linked lists of half-edges around each vertex.
struct Rotation {
    cw: Vec<usize>,
    ccw: Vec<usize>,
    first: Vec<Option<usize>>,
}

impl Rotation {
    fn new(nodes: usize, half_edges: usize) -> Self {
        Rotation { cw: (0..half_edges).collect(), ccw: (0..half_edges).collect(), first: vec![None; nodes] }
    }

    fn insert_cw(&mut self, v: usize, h: usize, after: Option<usize>) {
        match after {
            None => {
                self.cw[h] = h;
                self.ccw[h] = h;
                self.first[v] = Some(h);
            }
            Some(a) => {
                let next = self.cw[a];
                self.cw[a] = h;
                self.ccw[h] = a;
                self.cw[h] = next;
                self.ccw[next] = h;
            }
        }
    }

    fn insert_ccw(&mut self, v: usize, h: usize, before: Option<usize>) {
        match before {
            None => self.insert_cw(v, h, None),
            Some(b) => {
                let previous = self.ccw[b];
                self.insert_cw(v, h, Some(previous));
                if self.first[v] == Some(b) {
                    self.first[v] = Some(h);
                }
            }
        }
    }

    fn insert_first(&mut self, v: usize, h: usize) {
        let first = self.first[v];
        self.insert_ccw(v, h, first);
        self.first[v] = Some(h);
    }
}
