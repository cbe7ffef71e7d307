//! The paths a skimmer (`json/skim.rs`) watches in a document, as bit sets: which paths an object
//! member or an array element at a given depth continues, and which end there. At most [`MAX_PATHS`]
//! paths of at most [`MAX_PATH_STEPS`] steps, so every set is one `u32` and nothing is allocated.

/// Most paths one skimmer watches (they are bits of a `u32`).
pub const MAX_PATHS: usize = 32;

/// Longest watched path, in steps.
pub const MAX_PATH_STEPS: usize = 3;

/// Longest watched member name after unescaping, in bytes (the longest real one, Anthropic's
/// `cache_creation_input_tokens`, is 27; `body_scan` compares names of up to 64).
pub const MAX_NAME_BYTES: usize = 64;

/// One step of a watched path, from the top-level value down.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub enum Step {
    /// The member of this name (compared after unescaping) of an object.
    Member(&'static str),
    /// Any element of an array.
    Element,
}

/// A watched path: the steps from the top-level value to the value to keep.
pub type Path = &'static [Step];

/// A checked list of watched paths.
#[derive(Debug, Clone, Copy)]
pub struct Paths(&'static [Path]);

impl Paths {
    /// Panics (a programmer error) unless there are at most [`MAX_PATHS`] paths of 1 to
    /// [`MAX_PATH_STEPS`] steps with names of at most [`MAX_NAME_BYTES`].
    pub fn new(paths: &'static [Path]) -> Self {
        let fits = |s: &Step| !matches!(s, Step::Member(n) if n.len() > MAX_NAME_BYTES);
        assert!(
            paths.len() <= MAX_PATHS
                && paths
                    .iter()
                    .all(|p| (1..=MAX_PATH_STEPS).contains(&p.len()) && p.iter().all(fits)),
            "watched paths: at most MAX_PATHS of 1 to MAX_PATH_STEPS steps, names of MAX_NAME_BYTES"
        );
        Paths(paths)
    }

    fn mask(self, f: impl Fn(Path) -> bool) -> u32 {
        (self.0.iter().enumerate())
            .filter(|(_, p)| f(p))
            .fold(0, |m, (k, _)| m | 1 << k)
    }

    /// Every path.
    pub fn all(self) -> u32 {
        self.mask(|_| true)
    }

    /// The paths with more than `steps` steps.
    pub fn longer_than(self, steps: usize) -> u32 {
        self.mask(|p| p.len() > steps)
    }

    /// The paths whose step into a value at `depth` (1 for the top-level value's children) is an
    /// array element.
    pub fn elements_at(self, depth: usize) -> u32 {
        self.mask(|p| p.get(depth - 1) == Some(&Step::Element))
    }

    /// The paths whose step into a value at `depth` is the member `name` (unescaped).
    pub fn members_at(self, depth: usize, name: &[u8]) -> u32 {
        self.mask(|p| matches!(p.get(depth - 1), Some(Step::Member(n)) if n.as_bytes() == name))
    }

    /// The first path of `set` that ends at a value at `depth`.
    pub fn ending_at(self, set: u32, depth: usize) -> Option<usize> {
        (0..self.0.len()).find(|&k| set & (1 << k) != 0 && self.0[k].len() == depth)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn sets() {
        const P: &[Path] = &[
            &[Step::Member("usage")],
            &[Step::Member("response"), Step::Member("usage")],
            &[Step::Element, Step::Member("usage")],
        ];
        let p = Paths::new(P);
        assert_eq!(p.all(), 0b111);
        assert_eq!(p.longer_than(1), 0b110);
        assert_eq!(p.elements_at(1), 0b100);
        assert_eq!(p.members_at(1, b"usage"), 0b001);
        assert_eq!(p.members_at(2, b"usage"), 0b110);
        assert_eq!(p.members_at(1, b"usagE"), 0);
        assert_eq!(p.ending_at(0b110, 2), Some(1));
        assert_eq!(p.ending_at(0b110, 1), None);
        assert_eq!(Paths::new(&[]).all(), 0);
    }

    #[test]
    #[should_panic(expected = "watched paths")]
    fn empty_path_is_a_programmer_error() {
        Paths::new(&[&[]]);
    }
}
