//! Mini-batches: in order without copying (evaluation), or in a shuffled
//! order drawn from a caller's rng (training epochs).

use rand::seq::SliceRandom;
use rand::Rng;

use super::Dataset;

/// A contiguous batch borrowed from a dataset.
#[derive(Debug, Clone, Copy)]
pub struct BatchRef<'a> {
    /// Index of the first image in the dataset.
    pub start: usize,
    /// `len()` images, N x C x H x W.
    pub images: &'a [f32],
    pub labels: &'a [u8],
}

impl BatchRef<'_> {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// A batch gathered from arbitrary positions of a dataset.
#[derive(Debug, Clone, PartialEq)]
pub struct Batch {
    /// Dataset index of each image.
    pub indices: Vec<usize>,
    /// `len()` images, N x C x H x W.
    pub images: Vec<f32>,
    pub labels: Vec<u8>,
}

impl Batch {
    pub fn len(&self) -> usize {
        self.labels.len()
    }
    pub fn is_empty(&self) -> bool {
        self.labels.is_empty()
    }
}

/// Iterator over consecutive batches; the last one may be smaller.
#[derive(Debug, Clone)]
pub struct Batches<'a> {
    data: &'a Dataset,
    size: usize,
    pos: usize,
}

impl<'a> Iterator for Batches<'a> {
    type Item = BatchRef<'a>;
    fn next(&mut self) -> Option<BatchRef<'a>> {
        let n = self.data.len();
        if self.pos >= n {
            return None;
        }
        let end = (self.pos + self.size).min(n);
        let numel = self.data.shape.numel();
        let b = BatchRef {
            start: self.pos,
            images: &self.data.images[self.pos * numel..end * numel],
            labels: &self.data.labels[self.pos..end],
        };
        self.pos = end;
        Some(b)
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = self.data.len().saturating_sub(self.pos).div_ceil(self.size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for Batches<'_> {}

/// Iterator over batches in a shuffled order; the last one may be smaller.
#[derive(Debug, Clone)]
pub struct ShuffledBatches<'a> {
    data: &'a Dataset,
    order: Vec<usize>,
    size: usize,
    pos: usize,
}

impl Iterator for ShuffledBatches<'_> {
    type Item = Batch;
    fn next(&mut self) -> Option<Batch> {
        if self.pos >= self.order.len() {
            return None;
        }
        let end = (self.pos + self.size).min(self.order.len());
        let indices = self.order[self.pos..end].to_vec();
        self.pos = end;
        let numel = self.data.shape.numel();
        let mut images = Vec::with_capacity(indices.len() * numel);
        let mut labels = Vec::with_capacity(indices.len());
        for &i in &indices {
            images.extend_from_slice(self.data.image(i));
            labels.push(self.data.labels[i]);
        }
        Some(Batch {
            indices,
            images,
            labels,
        })
    }
    fn size_hint(&self) -> (usize, Option<usize>) {
        let left = (self.order.len() - self.pos).div_ceil(self.size);
        (left, Some(left))
    }
}

impl ExactSizeIterator for ShuffledBatches<'_> {}

impl Dataset {
    /// Consecutive batches of `size` images, borrowed.
    ///
    /// # Panics
    /// If `size` is 0 (like `slice::chunks`).
    pub fn batches(&self, size: usize) -> Batches<'_> {
        assert!(size > 0, "batch size must be positive");
        Batches {
            data: self,
            size,
            pos: 0,
        }
    }

    /// Batches of `size` images in an order shuffled with `rng` (one
    /// permutation per call: one call per epoch).
    ///
    /// # Panics
    /// If `size` is 0.
    pub fn shuffled_batches<R: Rng + ?Sized>(
        &self,
        size: usize,
        rng: &mut R,
    ) -> ShuffledBatches<'_> {
        assert!(size > 0, "batch size must be positive");
        let mut order: Vec<usize> = (0..self.len()).collect();
        order.shuffle(rng);
        ShuffledBatches {
            data: self,
            order,
            size,
            pos: 0,
        }
    }
}

#[cfg(test)]
mod tests {
    use crate::data::Dataset;
    use crate::model::Shape;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    fn ramp(n: usize) -> Dataset {
        Dataset {
            name: "r".into(),
            shape: Shape::new(1, 1, 1),
            num_classes: 256,
            images: (0..n).map(|i| i as f32).collect(),
            labels: (0..n).map(|i| i as u8).collect(),
        }
    }

    #[test]
    fn ordered_batches_cover_everything() {
        let d = ramp(10);
        let it = d.batches(4);
        assert_eq!(it.len(), 3);
        let bs: Vec<_> = it.collect();
        assert_eq!(
            bs.iter().map(|b| b.len()).collect::<Vec<_>>(),
            vec![4, 4, 2]
        );
        assert_eq!(bs[2].start, 8);
        assert_eq!(bs[2].images, &[8.0, 9.0]);
        assert_eq!(ramp(0).batches(3).count(), 0);
    }

    #[test]
    fn shuffled_batches_are_a_seeded_permutation() {
        let d = ramp(50);
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(1);
        let bs: Vec<_> = d.shuffled_batches(16, &mut rng).collect();
        assert_eq!(bs.len(), 4);
        let mut seen: Vec<usize> = bs.iter().flat_map(|b| b.indices.clone()).collect();
        assert_ne!(seen, (0..50).collect::<Vec<_>>());
        for b in &bs {
            for (k, &i) in b.indices.iter().enumerate() {
                assert_eq!(b.images[k], i as f32);
                assert_eq!(b.labels[k], i as u8);
            }
        }
        seen.sort_unstable();
        assert_eq!(seen, (0..50).collect::<Vec<_>>());
        let mut rng2 = Xoshiro256PlusPlus::seed_from_u64(1);
        let again: Vec<_> = d.shuffled_batches(16, &mut rng2).collect();
        assert_eq!(bs, again);
    }
}
