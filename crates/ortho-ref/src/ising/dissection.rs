//! Nested dissection ordering of a planar graph by breadth-first level separators.
//!
//! Each piece is split by one level of a breadth-first search from a pseudo-peripheral vertex: of the
//! levels that leave at least a fifth of the piece on either side, the smallest. The two sides are
//! ordered first (recursively), the separator last, so elimination never fills across it. On grids and
//! meshes the levels have O(sqrt N) vertices, which gives the O(N^1.5) factorisation of a planar
//! graph; graphs whose levels are wider cost more.

/// Pieces this small are ordered as they are: their fill is bounded by their size.
const LEAF: usize = 48;

enum Task {
    Split(Vec<usize>),
    Emit(Vec<usize>),
}

/// An elimination order: `order[k]` is the vertex eliminated k-th.
pub fn nested_dissection(adjacency: &[Vec<usize>]) -> Vec<usize> {
    let n = adjacency.len();
    let mut order = Vec::with_capacity(n);
    let mut piece = vec![0usize; n];
    let mut distance = vec![usize::MAX; n];
    let mut next_piece = 1;
    let mut tasks = vec![Task::Split((0..n).collect())];
    while let Some(task) = tasks.pop() {
        let vertices = match task {
            Task::Emit(vertices) => {
                order.extend(vertices);
                continue;
            }
            Task::Split(vertices) => vertices,
        };
        if vertices.len() <= LEAF {
            order.extend(vertices);
            continue;
        }
        let id = next_piece;
        next_piece += 1;
        for &v in &vertices {
            piece[v] = id;
        }
        let bfs = |start: usize, distance: &mut Vec<usize>| -> Vec<usize> {
            let mut queue = vec![start];
            distance[start] = 0;
            let mut head = 0;
            while head < queue.len() {
                let u = queue[head];
                head += 1;
                for &w in &adjacency[u] {
                    if piece[w] == id && distance[w] == usize::MAX {
                        distance[w] = distance[u] + 1;
                        queue.push(w);
                    }
                }
            }
            queue
        };
        let reset = |queue: &[usize], distance: &mut Vec<usize>| {
            for &v in queue {
                distance[v] = usize::MAX;
            }
        };
        let first = bfs(vertices[0], &mut distance);
        if first.len() < vertices.len() {
            // Disconnected: order each component on its own.
            let rest: Vec<usize> = vertices.iter().copied().filter(|&v| distance[v] == usize::MAX).collect();
            reset(&first, &mut distance);
            tasks.push(Task::Split(rest));
            tasks.push(Task::Split(first));
            continue;
        }
        // Two sweeps find a pseudo-peripheral start.
        let far = *first.last().unwrap();
        reset(&first, &mut distance);
        let levels_order = bfs(far, &mut distance);
        let depth = distance[*levels_order.last().unwrap()];
        let mut sizes = vec![0usize; depth + 1];
        for &v in &levels_order {
            sizes[distance[v]] += 1;
        }
        let total = vertices.len();
        let mut before = 0;
        let mut best: Option<(usize, usize)> = None;
        for (level, &size) in sizes.iter().enumerate() {
            let after = total - before - size;
            if 5 * before >= total && 5 * after >= total && best.is_none_or(|(_, s)| size < s) {
                best = Some((level, size));
            }
            before += size;
        }
        let level = match best {
            Some((level, _)) => level,
            None => {
                // No balanced level (a long thin piece): the median one.
                let mut count = 0;
                sizes
                    .iter()
                    .position(|&s| {
                        count += s;
                        2 * count >= total
                    })
                    .unwrap()
            }
        };
        let (mut low, mut separator, mut high) = (Vec::new(), Vec::new(), Vec::new());
        for &v in &levels_order {
            match distance[v].cmp(&level) {
                std::cmp::Ordering::Less => low.push(v),
                std::cmp::Ordering::Equal => separator.push(v),
                std::cmp::Ordering::Greater => high.push(v),
            }
        }
        reset(&levels_order, &mut distance);
        tasks.push(Task::Emit(separator));
        tasks.push(Task::Split(high));
        tasks.push(Task::Split(low));
    }
    order
}
