//! Whole-network fixed-point inference throughput (images/s) for the shipped
//! ResNet-20 and MobileNet-V2 model files on 1x28x28 inputs: fast engine at
//! batch 1 and 128, clean, under MiBB p=1e-4 feature faults and (ResNet-20,
//! batch 128) under the stuck MAC-unit bits of a chip of the edge 16x16 OS
//! array at 1e-4 per bit at all four PE sites (`[stuck_macs]`), and the
//! reference engine at batch 1 for scale. Real Fashion-MNIST test images
//! when the Debian package is installed, seeded random pixels otherwise
//! (throughput does not depend on pixel values).
//!
//! Run: `cargo bench --bench inference`.
//!
//! On a shared machine wall-clock throughput mostly measures the other
//! load. `FTNAS_BENCH_CPU=1 cargo bench --bench inference` instead prints,
//! per case, images per CPU-second of this process (user + system time
//! from `/proc/self/stat`, so time spent waiting for a core does not
//! count) and skips criterion. Multiply by the core count for the
//! throughput of an otherwise idle machine with perfect scaling.

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::data::{self, Split};
use ftnas::engine::{Engine, FastEngine, FeatureFaults, ReferenceEngine};
use ftnas::fault::FaultModel;
use ftnas::fixed::Datapath;
use ftnas::model::{load_model, Shape, Weights};
use ftnas::quant;
use rand::{Rng, SeedableRng};
use rand_xoshiro::Xoshiro256PlusPlus;

fn images(shape: Shape, n: usize) -> Vec<f32> {
    match data::load(None, Split::Test) {
        Ok(d) if d.shape == shape && d.len() >= n => d.images[..n * shape.numel()].to_vec(),
        _ => {
            let mut rng = Xoshiro256PlusPlus::seed_from_u64(n as u64);
            (0..n * shape.numel())
                .map(|_| rng.random::<f32>())
                .collect()
        }
    }
}

/// User + system CPU seconds of this process so far (Linux), if readable.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name; utime, stime are 14, 15
    let rest = &stat[stat.rfind(')')? + 2..];
    let fields: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = fields.get(11)?.parse::<f64>().ok()? + fields.get(12)?.parse::<f64>().ok()?;
    // USER_HZ is 100 on every Linux configuration Rust targets
    Some(ticks / 100.0)
}

/// Runs `f` (one batch of `batch` images) for at least 4 CPU-seconds and
/// prints images per CPU-second.
fn cpu_throughput(label: &str, batch: usize, mut f: impl FnMut()) {
    f(); // warm-up: workspaces sized, pages touched
    let Some(start) = cpu_seconds() else {
        println!("{label}: /proc/self/stat not readable");
        return;
    };
    let (mut images, mut spent) = (0usize, 0.0);
    while spent < 4.0 {
        f();
        images += batch;
        spent = cpu_seconds().unwrap_or(start) - start;
    }
    println!(
        "{label}: {:.0} images per CPU-second ({images} images, {spent:.2} CPU-s)",
        images as f64 / spent
    );
}

/// Stuck MAC-unit bits of the edge 16x16 OS array at 1e-4 per bit and
/// stuck value at all four PE sites, and the chip (trial) benchmarked:
/// the first whose draw has stuck bits, with their count.
fn stuck_macs() -> (FaultModel, u64, usize) {
    let text = "[stuck_macs]\ndataflow = \"os\"\nrows = 16\ncols = 16\n\
                act = { p0 = 1e-4, p1 = 1e-4 }\nweight = { p0 = 1e-4, p1 = 1e-4 }\n\
                product = { p0 = 1e-4, p1 = 1e-4 }\naccumulator = { p0 = 1e-4, p1 = 1e-4 }\n";
    let fm = FaultModel::parse_str(text, "stuck_macs.toml").unwrap();
    let m = fm.spec().stuck_macs.unwrap();
    let (trial, bits) = (0u64..)
        .map(|t| {
            (
                t,
                m.bits(ftnas::fault::draw_key(1, t), &Datapath::INT8).len(),
            )
        })
        .find(|&(_, n)| n > 0)
        .unwrap();
    (fm, trial, bits)
}

fn bench_inference(c: &mut Criterion) {
    if std::env::var_os("FTNAS_BENCH_CPU").is_some() {
        return cpu_mode();
    }
    let shape = Shape::new(1, 28, 28);
    let mibb = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
    let faults = FeatureFaults {
        injector: mibb.feature().unwrap(),
        seed: 1,
        trial: 0,
    };
    for name in ["resnet20", "mobilenetv2"] {
        let path = format!("{}/models/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let g = load_model(std::path::Path::new(&path), shape).unwrap();
        let w = Weights::random(&g, 1);
        let q = quant::quantize(&g, &w, Datapath::INT8, &images(shape, 16)).unwrap();
        let mut group = c.benchmark_group(format!("{name}_1x28x28_int8"));
        group.sample_size(10);
        for batch in [1usize, 128] {
            let imgs = images(shape, batch);
            group.throughput(Throughput::Elements(batch as u64));
            group.bench_function(format!("fast/batch{batch}/clean"), |b| {
                b.iter(|| FastEngine.run(&q, &imgs, 0, None).unwrap())
            });
            group.bench_function(format!("fast/batch{batch}/mibb1e-4"), |b| {
                b.iter(|| FastEngine.run(&q, &imgs, 0, Some(faults)).unwrap())
            });
        }
        if name == "resnet20" {
            let (stuck, trial, bits) = stuck_macs();
            let chip = FeatureFaults {
                injector: stuck.feature().unwrap(),
                seed: 1,
                trial,
            };
            let imgs = images(shape, 128);
            group.throughput(Throughput::Elements(128));
            group.bench_function(format!("fast/batch128/stuck_macs_{bits}_bits"), |b| {
                b.iter(|| FastEngine.run(&q, &imgs, 0, Some(chip)).unwrap())
            });
            let one = images(shape, 1);
            group.throughput(Throughput::Elements(1));
            group.bench_function("reference/batch1/clean", |b| {
                b.iter(|| ReferenceEngine.run(&q, &one, 0, None).unwrap())
            });
        }
        // What every CLI command pays before its work: the float forward
        // over the default 256 calibration images (in parallel).
        let calib = images(shape, 256);
        group.throughput(Throughput::Elements(256));
        group.bench_function("float_calibration/256_images", |b| {
            b.iter(|| quant::build::calibrate(&g, &w, &calib).unwrap())
        });
        group.finish();
    }
}

/// The `FTNAS_BENCH_CPU` mode: batch 128, fast engine, every model and
/// fault setting, CPU time instead of wall time.
fn cpu_mode() {
    let shape = Shape::new(1, 28, 28);
    let mibb = FaultModel::parse_feature_flag("mibb:1e-4").unwrap();
    let faults = FeatureFaults {
        injector: mibb.feature().unwrap(),
        seed: 1,
        trial: 0,
    };
    let filter: Vec<String> = std::env::args()
        .skip(1)
        .filter(|a| !a.starts_with('-'))
        .collect();
    for name in ["resnet20", "mobilenetv2"] {
        if !filter.is_empty() && !filter.iter().any(|f| name.contains(f.as_str())) {
            continue;
        }
        let path = format!("{}/models/{name}.toml", env!("CARGO_MANIFEST_DIR"));
        let g = load_model(std::path::Path::new(&path), shape).unwrap();
        let w = Weights::random(&g, 1);
        let q = quant::quantize(&g, &w, Datapath::INT8, &images(shape, 16)).unwrap();
        let imgs = images(shape, 128);
        cpu_throughput(&format!("{name} fast batch128 clean"), 128, || {
            FastEngine.run(&q, &imgs, 0, None).unwrap();
        });
        cpu_throughput(&format!("{name} fast batch128 mibb1e-4"), 128, || {
            FastEngine.run(&q, &imgs, 0, Some(faults)).unwrap();
        });
        if name == "resnet20" {
            let (stuck, trial, bits) = stuck_macs();
            let chip = FeatureFaults {
                injector: stuck.feature().unwrap(),
                seed: 1,
                trial,
            };
            let label = format!("{name} fast batch128 stuck MAC-unit bits ({bits} bits)");
            cpu_throughput(&label, 128, || {
                FastEngine.run(&q, &imgs, 0, Some(chip)).unwrap();
            });
        }
    }
}

criterion_group!(benches, bench_inference);
criterion_main!(benches);
