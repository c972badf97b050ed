//! Codes read on demand, for callers that do not hold a layer's output as
//! codes (training keeps fake-quantized floats): the sparse feature models
//! (MiBB, bit flips) visit only the elements they hit, in increasing order,
//! so converting the whole output to codes and back would cost more than
//! the faults. [`CodeAccess`] is what those models read and write; a plain
//! slice and [`SparseCodes`] both provide it, so one implementation of each
//! model serves both (the results are the same element for element, which
//! `tests/fault_props.rs` checks).

/// Read and write access to a layer's output codes.
pub trait CodeAccess {
    fn len(&self) -> usize;
    fn is_empty(&self) -> bool {
        self.len() == 0
    }
    fn get(&self, i: usize) -> i32;
    fn set(&mut self, i: usize, v: i32);
}

/// Plain code buffers: slices, vectors.
impl<T: AsRef<[i32]> + AsMut<[i32]> + ?Sized> CodeAccess for T {
    fn len(&self) -> usize {
        self.as_ref().len()
    }
    #[inline]
    fn get(&self, i: usize) -> i32 {
        self.as_ref()[i]
    }
    #[inline]
    fn set(&mut self, i: usize, v: i32) {
        self.as_mut()[i] = v;
    }
}

/// `len` clean codes given by a function, and the changes written so far
/// as `(index, code)` in increasing index order. Writes must come in
/// non-decreasing index order (as the skip-sampled models make them); a
/// read sees the last write of that index.
pub struct SparseCodes<'a> {
    clean: &'a dyn Fn(usize) -> i32,
    len: usize,
    hits: Vec<(usize, i32)>,
}

impl<'a> SparseCodes<'a> {
    pub fn new(len: usize, clean: &'a dyn Fn(usize) -> i32) -> SparseCodes<'a> {
        SparseCodes {
            clean,
            len,
            hits: Vec::new(),
        }
    }

    /// The written codes, `(index, code)`, increasing and distinct indices.
    pub fn hits(&self) -> &[(usize, i32)] {
        &self.hits
    }

    /// The written codes, taken out (no copy).
    pub fn into_hits(self) -> Vec<(usize, i32)> {
        self.hits
    }
}

impl CodeAccess for SparseCodes<'_> {
    fn len(&self) -> usize {
        self.len
    }

    #[inline]
    fn get(&self, i: usize) -> i32 {
        match self.hits.last() {
            Some(&(j, v)) if j == i => v,
            _ => {
                debug_assert!(self.hits.binary_search_by_key(&i, |h| h.0).is_err());
                (self.clean)(i)
            }
        }
    }

    #[inline]
    fn set(&mut self, i: usize, v: i32) {
        match self.hits.last_mut() {
            Some(last) if last.0 == i => last.1 = v,
            last => {
                assert!(
                    last.is_none_or(|l| l.0 < i),
                    "SparseCodes writes must come in increasing index order"
                );
                self.hits.push((i, v));
            }
        }
    }
}

/// The dense fallback for models that are not skip-sampled: all codes
/// materialized, the model applied, the changed ones recorded.
pub fn inject_dense(codes: &mut SparseCodes, apply: impl FnOnce(&mut [i32])) {
    let clean: Vec<i32> = (0..codes.len).map(|i| (codes.clean)(i)).collect();
    let mut v = clean.clone();
    apply(&mut v);
    codes.hits.clear();
    codes.hits.extend(
        v.iter()
            .zip(&clean)
            .enumerate()
            .filter(|(_, (a, b))| a != b)
            .map(|(i, (&a, _))| (i, a)),
    );
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn reads_see_the_last_write_and_writes_merge() {
        let clean = |i: usize| i as i32 * 10;
        let mut s = SparseCodes::new(5, &clean);
        assert_eq!(s.get(2), 20);
        s.set(2, 7);
        assert_eq!(s.get(2), 7);
        s.set(2, 8);
        s.set(4, 1);
        assert_eq!(s.get(3), 30);
        assert_eq!(s.hits(), &[(2, 8), (4, 1)]);
        assert_eq!(CodeAccess::len(&s), 5);
    }

    #[test]
    #[should_panic(expected = "increasing index order")]
    fn out_of_order_writes_are_a_bug() {
        let clean = |_: usize| 0;
        let mut s = SparseCodes::new(5, &clean);
        s.set(3, 1);
        s.set(1, 1);
    }

    #[test]
    fn dense_fallback_records_only_changes() {
        let clean = |i: usize| i as i32;
        let mut s = SparseCodes::new(4, &clean);
        inject_dense(&mut s, |v| {
            v[1] = 1;
            v[3] = -3;
        });
        assert_eq!(s.hits(), &[(3, -3)]);
    }
}
