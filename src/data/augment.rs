//! Training-time augmentation of C x H x W images in place: random crop
//! after zero padding, and horizontal flip (the standard CIFAR-10 recipe the
//! FTT-NAS paper trains with). Randomness comes from the caller's rng so
//! that training stays reproducible from its seed.

use rand::Rng;

use crate::model::Shape;

fn check(image: &[f32], shape: Shape) {
    assert_eq!(
        image.len(),
        shape.numel(),
        "image of {} values does not match shape {shape}",
        image.len()
    );
}

/// Mirror `image` left-right.
///
/// # Panics
/// If `image.len() != shape.numel()`.
pub fn hflip(image: &mut [f32], shape: Shape) {
    check(image, shape);
    if shape.w == 0 {
        return;
    }
    for row in image.chunks_exact_mut(shape.w) {
        row.reverse();
    }
}

/// Mirror `image` left-right with probability 1/2; returns whether it did.
pub fn random_hflip<R: Rng + ?Sized>(image: &mut [f32], shape: Shape, rng: &mut R) -> bool {
    let flip = rng.random_bool(0.5);
    if flip {
        hflip(image, shape);
    }
    flip
}

/// Pad `image` with `pad` zeros on every side and crop an H x W window at a
/// uniformly random offset (each of the `(2 pad + 1)^2` offsets equally
/// likely); returns the shift `(dy, dx)` applied, each in `-pad..=pad`
/// (output pixel (y, x) comes from input pixel (y + dy, x + dx)).
///
/// # Panics
/// If `image.len() != shape.numel()`.
pub fn random_crop<R: Rng + ?Sized>(
    image: &mut [f32],
    shape: Shape,
    pad: usize,
    rng: &mut R,
) -> (isize, isize) {
    check(image, shape);
    if pad == 0 {
        return (0, 0);
    }
    let dy = rng.random_range(0..=2 * pad) as isize - pad as isize;
    let dx = rng.random_range(0..=2 * pad) as isize - pad as isize;
    shift(image, shape, dy, dx);
    (dy, dx)
}

/// Output (y, x) = input (y + dy, x + dx), zero outside the image.
fn shift(image: &mut [f32], shape: Shape, dy: isize, dx: isize) {
    let (h, w) = (shape.h as isize, shape.w as isize);
    let plane = shape.h * shape.w;
    if plane == 0 {
        return;
    }
    let mut src = vec![0.0f32; plane];
    for ch in image.chunks_exact_mut(plane) {
        src.copy_from_slice(ch);
        for y in 0..h {
            let sy = y + dy;
            let row = &mut ch[(y * w) as usize..((y + 1) * w) as usize];
            if sy < 0 || sy >= h {
                row.fill(0.0);
                continue;
            }
            for (x, out) in row.iter_mut().enumerate() {
                let sx = x as isize + dx;
                *out = if sx < 0 || sx >= w {
                    0.0
                } else {
                    src[(sy * w + sx) as usize]
                };
            }
        }
    }
}

/// An augmentation recipe: random crop with `pad` (0 = none), then a random
/// horizontal flip if `flip`.
#[derive(Debug, Clone, Copy, PartialEq, Eq)]
pub struct Augment {
    pub pad: usize,
    pub flip: bool,
}

impl Augment {
    /// Nothing changed.
    pub const NONE: Augment = Augment {
        pad: 0,
        flip: false,
    };
    /// The usual CIFAR-10 recipe: pad 4, flip.
    pub const CIFAR: Augment = Augment { pad: 4, flip: true };

    /// Augment one image in place.
    pub fn apply<R: Rng + ?Sized>(&self, image: &mut [f32], shape: Shape, rng: &mut R) {
        random_crop(image, shape, self.pad, rng);
        if self.flip {
            random_hflip(image, shape, rng);
        }
    }

    /// Augment every image of a N x C x H x W batch in place.
    pub fn apply_batch<R: Rng + ?Sized>(&self, images: &mut [f32], shape: Shape, rng: &mut R) {
        let n = shape.numel();
        if n == 0 {
            return;
        }
        for img in images.chunks_exact_mut(n) {
            self.apply(img, shape, rng);
        }
    }
}

#[cfg(test)]
mod tests {
    use super::*;
    use rand::SeedableRng;
    use rand_xoshiro::Xoshiro256PlusPlus;

    #[test]
    fn hflip_mirrors_each_row_of_each_channel() {
        let s = Shape::new(2, 2, 3);
        let mut img: Vec<f32> = (0..12).map(|i| i as f32).collect();
        hflip(&mut img, s);
        assert_eq!(img, vec![2., 1., 0., 5., 4., 3., 8., 7., 6., 11., 10., 9.]);
    }

    #[test]
    fn shift_moves_pixels_and_zero_fills() {
        let s = Shape::new(1, 3, 3);
        let mut img: Vec<f32> = (1..=9).map(|i| i as f32).collect();
        shift(&mut img, s, 1, -1);
        assert_eq!(img, vec![0., 4., 5., 0., 7., 8., 0., 0., 0.]);
    }

    #[test]
    fn random_crop_reports_its_shift_and_covers_all_offsets() {
        let s = Shape::new(1, 4, 4);
        let orig: Vec<f32> = (1..=16).map(|i| i as f32).collect();
        let mut rng = Xoshiro256PlusPlus::seed_from_u64(3);
        let mut seen = std::collections::HashSet::new();
        for _ in 0..400 {
            let mut img = orig.clone();
            let (dy, dx) = random_crop(&mut img, s, 2, &mut rng);
            assert!((-2..=2).contains(&dy) && (-2..=2).contains(&dx));
            let mut expect = orig.clone();
            shift(&mut expect, s, dy, dx);
            assert_eq!(img, expect);
            seen.insert((dy, dx));
        }
        assert_eq!(seen.len(), 25);
    }

    #[test]
    fn augment_is_reproducible_from_the_seed() {
        let s = Shape::new(3, 8, 8);
        let base: Vec<f32> = (0..2 * 192).map(|i| (i % 17) as f32).collect();
        let run = |seed| {
            let mut imgs = base.clone();
            Augment::CIFAR.apply_batch(&mut imgs, s, &mut Xoshiro256PlusPlus::seed_from_u64(seed));
            imgs
        };
        assert_eq!(run(5), run(5));
        let mut none = base.clone();
        Augment::NONE.apply_batch(&mut none, s, &mut Xoshiro256PlusPlus::seed_from_u64(5));
        assert_eq!(none, base);
    }
}
