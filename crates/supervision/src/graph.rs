//! The dependency graph between a supervisor's children: start layers, start order, cycles.

use std::collections::{HashMap, HashSet};

use super::SupervisionError;

/// Children arranged for start-up: each child's layer is one more than the deepest of its
/// dependencies, so a layer only needs the layers before it.
#[derive(Debug, Clone, Default)]
pub struct DependencyGraph {
    /// Layer of each child, by index in the input.
    layer: Vec<usize>,
    /// Indices of each child's dependencies.
    depends_on: Lists,
    /// Indices of the children that depend on each child.
    dependents: Lists,
    /// Children per layer, in input order inside a layer.
    layers: Vec<Vec<usize>>,
    /// Position of each child in the start order (layer by layer, input order inside).
    position: Vec<usize>,
}

impl DependencyGraph {
    /// Builds the graph for children given as `(id, dependency ids)` in declaration order.
    ///
    /// Fails on a duplicate id, a dependency on an unknown id, or a cycle (the error names
    /// the cycle, e.g. `a -> b -> a`).
    pub fn build<'a, I, D>(children: I) -> Result<Self, SupervisionError>
    where
        I: IntoIterator<Item = (&'a str, D)>,
        D: IntoIterator<Item = &'a str>,
    {
        let children: Vec<(&str, Vec<&str>)> = children
            .into_iter()
            .map(|(id, deps)| (id, deps.into_iter().collect()))
            .collect();
        let mut index = HashMap::with_capacity(children.len());
        for (i, (id, _)) in children.iter().enumerate() {
            if index.insert(*id, i).is_some() {
                return Err(SupervisionError::DuplicateChild(id.to_string()));
            }
        }
        let mut depends_on = Vec::with_capacity(children.len());
        let mut dependents = vec![Vec::new(); children.len()];
        for (i, (id, deps)) in children.iter().enumerate() {
            let mut mine = Vec::with_capacity(deps.len());
            let mut seen = HashSet::with_capacity(deps.len());
            for dep in deps {
                let &j = index
                    .get(dep)
                    .ok_or_else(|| SupervisionError::UnknownDependency {
                        child: id.to_string(),
                        dependency: dep.to_string(),
                    })?;
                if seen.insert(j) {
                    mine.push(j);
                    dependents[j].push(i);
                }
            }
            depends_on.push(mine);
        }

        // Kahn's algorithm, tracking the depth of each child as its layer.
        let n = children.len();
        let mut missing: Vec<usize> = depends_on.iter().map(Vec::len).collect();
        let mut layer = vec![0; n];
        let mut ready: Vec<usize> = (0..n).filter(|&i| missing[i] == 0).collect();
        let mut placed = 0;
        while let Some(i) = ready.pop() {
            placed += 1;
            for &d in &dependents[i] {
                layer[d] = layer[d].max(layer[i] + 1);
                missing[d] -= 1;
                if missing[d] == 0 {
                    ready.push(d);
                }
            }
        }
        if placed < n {
            let cycle = find_cycle(&depends_on, &missing);
            let names = cycle.iter().map(|&i| children[i].0.to_string()).collect();
            return Err(SupervisionError::Cycle(names));
        }

        let depth = layer.iter().copied().max().map_or(0, |d| d + 1);
        let mut layers = vec![Vec::new(); depth];
        for (i, &l) in layer.iter().enumerate() {
            layers[l].push(i);
        }
        let mut position = vec![0; n];
        for (p, &i) in layers.iter().flatten().enumerate() {
            position[i] = p;
        }
        Ok(DependencyGraph {
            layer,
            depends_on: Lists::new(&depends_on),
            dependents: Lists::new(&dependents),
            layers,
            position,
        })
    }

    /// Number of children.
    pub fn len(&self) -> usize {
        self.layer.len()
    }

    /// Whether there are no children.
    pub fn is_empty(&self) -> bool {
        self.layer.is_empty()
    }

    /// The layer of child `i` (0 = depends on nothing).
    pub fn layer_of(&self, i: usize) -> usize {
        self.layer[i]
    }

    /// The children of each layer, lowest first.
    pub fn layers(&self) -> &[Vec<usize>] {
        &self.layers
    }

    /// Direct dependencies of child `i`.
    pub fn depends_on(&self, i: usize) -> &[usize] {
        self.depends_on.get(i)
    }

    /// Children that directly depend on child `i`.
    pub fn dependents(&self, i: usize) -> &[usize] {
        self.dependents.get(i)
    }

    /// Position of child `i` in the start order.
    pub fn position(&self, i: usize) -> usize {
        self.position[i]
    }

    /// All children in start order.
    pub fn start_order(&self) -> impl Iterator<Item = usize> + '_ {
        self.layers.iter().flatten().copied()
    }
}

/// One list of child indices per child, kept in two vectors rather than one per child: a
/// server holds a graph per session, thousands of them.
#[derive(Debug, Clone, Default)]
struct Lists {
    /// Where each child's list ends in `items`; it starts where the previous one ends.
    ends: Vec<usize>,
    items: Vec<usize>,
}

impl Lists {
    fn new(lists: &[Vec<usize>]) -> Lists {
        let mut ends = Vec::with_capacity(lists.len());
        let mut items = Vec::with_capacity(lists.iter().map(Vec::len).sum());
        for list in lists {
            items.extend_from_slice(list);
            ends.push(items.len());
        }
        Lists { ends, items }
    }

    fn get(&self, i: usize) -> &[usize] {
        let start = if i == 0 { 0 } else { self.ends[i - 1] };
        &self.items[start..self.ends[i]]
    }
}

/// Finds one cycle among the children Kahn's algorithm could not place (`missing > 0`),
/// returned closed and in dependency direction: `[a, b, a]` = a needs b, b needs a.
fn find_cycle(depends_on: &[Vec<usize>], missing: &[usize]) -> Vec<usize> {
    // Every unplaced child has an unplaced dependency, so walking unplaced dependencies
    // must revisit a child: the walk from the first revisit on is a cycle.
    let Some(start) = (0..missing.len()).find(|&i| missing[i] > 0) else {
        return Vec::new();
    };
    let mut path = vec![start];
    let mut at_step = HashMap::from([(start, 0)]);
    let mut current = start;
    loop {
        let Some(&next) = depends_on[current].iter().find(|&&d| missing[d] > 0) else {
            return path;
        };
        if let Some(&step) = at_step.get(&next) {
            let mut cycle = path.split_off(step);
            cycle.push(next);
            return cycle;
        }
        at_step.insert(next, path.len());
        path.push(next);
        current = next;
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    fn graph(
        spec: &[(&'static str, &[&'static str])],
    ) -> Result<DependencyGraph, SupervisionError> {
        DependencyGraph::build(spec.iter().map(|(id, deps)| (*id, deps.iter().copied())))
    }

    #[test]
    fn layers_follow_the_longest_dependency_chain() {
        let g = graph(&[
            ("web", &["api", "db"]),
            ("db", &[]),
            ("api", &["db"]),
            ("cache", &[]),
        ])
        .unwrap();
        assert_eq!(g.layer_of(0), 2);
        assert_eq!(g.layer_of(1), 0);
        assert_eq!(g.layer_of(2), 1);
        assert_eq!(g.layer_of(3), 0);
        assert_eq!(g.layers(), &[vec![1, 3], vec![2], vec![0]]);
        assert_eq!(g.start_order().collect::<Vec<_>>(), vec![1, 3, 2, 0]);
        assert_eq!(g.position(0), 3);
        assert_eq!(g.dependents(1), &[0, 2]);
    }

    #[test]
    fn a_cycle_is_named() {
        let err = graph(&[("a", &["b"]), ("b", &["c"]), ("c", &["a"]), ("d", &[])]).unwrap_err();
        match &err {
            SupervisionError::Cycle(names) => {
                assert_eq!(names.first(), names.last());
                assert_eq!(names.len(), 4);
                for n in ["a", "b", "c"] {
                    assert!(names.iter().any(|x| x == n), "{names:?} lacks {n}");
                }
            }
            other => panic!("expected a cycle, got {other:?}"),
        }
        assert!(err.to_string().contains(" -> "), "{err}");
    }

    #[test]
    fn a_self_dependency_is_a_cycle() {
        let err = graph(&[("a", &["a"])]).unwrap_err();
        assert_eq!(err.to_string(), "dependency cycle: a -> a");
    }

    #[test]
    fn unknown_dependency_and_duplicates_are_refused() {
        assert!(matches!(
            graph(&[("a", &["ghost"])]),
            Err(SupervisionError::UnknownDependency { child, dependency })
                if child == "a" && dependency == "ghost"
        ));
        assert!(matches!(
            graph(&[("a", &[]), ("a", &[])]),
            Err(SupervisionError::DuplicateChild(id)) if id == "a"
        ));
    }

    #[test]
    fn repeated_dependencies_count_once() {
        let g = graph(&[("a", &[]), ("b", &["a", "a"])]).unwrap();
        assert_eq!(g.depends_on(1), &[0]);
        assert_eq!(g.layer_of(1), 1);
    }

    #[test]
    fn empty_graph_has_no_layers() {
        let g = graph(&[]).unwrap();
        assert!(g.is_empty());
        assert!(g.layers().is_empty());
    }
}
