//! Training-step throughput (images/s) of the shipped ResNet-20 on 1x28x28
//! Fashion-MNIST images at batch 128: float, QAT, and QAT + FTT (a second,
//! faulty forward and backward under MiBB p=1e-4 feature faults or sa:1e-3
//! weight faults). One step = forward, backward, SGD update.
//!
//! Also MobileNet-V2 (QAT, QAT + FTT MiBB), whose big activations made
//! allocator page zeroing a quarter of a step (see `ftnas::malloc`).
//!
//! Run: `cargo bench --bench train` (`FTNAS_MALLOC=default` for the
//! untuned allocator).

use std::time::Duration;

use criterion::{criterion_group, criterion_main, Criterion, Throughput};
use ftnas::data::{self, Split};
use ftnas::fault::FaultModel;
use ftnas::model::load_model;
use ftnas::train::{Ftt, Params, TrainConfig, Trainer};

const BATCH: usize = 128;

/// One benchmark variant: name, QAT on, FTT fault model.
type Variant = (&'static str, bool, Option<FaultModel>);

fn bench_train(c: &mut Criterion) {
    let tuned = ftnas::malloc::keep_freed_memory();
    println!("allocator tuned: {tuned}");
    let train = data::load(None, Split::Train)
        .expect("Fashion-MNIST (apt package fashion-mnist) is needed")
        .take(BATCH);
    let mibb = || Some(FaultModel::parse_feature_flag("mibb:1e-4").unwrap());
    bench_model(
        c,
        &train,
        "resnet20",
        20,
        vec![
            ("float", false, None),
            ("qat", true, None),
            ("qat_ftt_mibb_1e-4", true, mibb()),
            (
                "qat_ftt_sa_1e-3",
                true,
                Some(FaultModel::parse_weight_flag("sa:1e-3").unwrap()),
            ),
        ],
    );
    bench_model(
        c,
        &train,
        "mobilenetv2",
        40,
        vec![("qat", true, None), ("qat_ftt_mibb_1e-4", true, mibb())],
    );
}

/// Group `train_step_{model}_b128` over `models/{model}.toml`.
fn bench_model(
    c: &mut Criterion,
    train: &data::Dataset,
    model: &str,
    seconds: u64,
    variants: Vec<Variant>,
) {
    let path = format!("models/{model}.toml");
    let graph = load_model(std::path::Path::new(&path), train.shape).unwrap();
    let mut group = c.benchmark_group(format!("train_step_{model}_b128"));
    group
        .sample_size(10)
        .measurement_time(Duration::from_secs(seconds))
        .throughput(Throughput::Elements(BATCH as u64));
    for (name, qat, fm) in variants {
        let mut cfg = TrainConfig::new(1, BATCH);
        cfg.qat = qat;
        cfg.qat_warmup_steps = 0;
        cfg.ftt = fm.map(|model| Ftt { model, alpha: 0.5 });
        let mut t = Trainer::new(&graph, cfg, Params::init(&graph, 0)).unwrap();
        t.calibrate(&train.images);
        group.bench_function(name, |b| {
            b.iter(|| t.train_step(&train.images, &train.labels))
        });
        let label = format!("{model} {name}");
        cpu_throughput(&label, &mut t, &train.images, &train.labels);
    }
    group.finish();
}

/// Process CPU time (user + system) in seconds, from /proc/self/stat
/// (clock ticks of 1/100 s); None where unavailable.
fn cpu_seconds() -> Option<f64> {
    let stat = std::fs::read_to_string("/proc/self/stat").ok()?;
    // fields after the parenthesised command name; utime, stime are 14, 15
    let rest = stat.rsplit_once(')')?.1;
    let f: Vec<&str> = rest.split_whitespace().collect();
    let ticks: f64 = f.get(11)?.parse::<f64>().ok()? + f.get(12)?.parse::<f64>().ok()?;
    Some(ticks / 100.0)
}

/// On a shared machine wall-clock throughput says little; images per CPU
/// second (x 2 = the 2-core figure if both cores were free and scaling
/// perfect) is printed beside criterion's numbers.
fn cpu_throughput(name: &str, t: &mut Trainer, images: &[f32], labels: &[u8]) {
    const STEPS: usize = 3;
    let (Some(c0), w0) = (cpu_seconds(), std::time::Instant::now()) else {
        return;
    };
    for _ in 0..STEPS {
        t.train_step(images, labels);
    }
    let (Some(c1), wall) = (cpu_seconds(), w0.elapsed().as_secs_f64()) else {
        return;
    };
    let imgs = (STEPS * labels.len()) as f64;
    println!(
        "{name}: {:.1} img/s wall, {:.1} img per CPU-second, {:.2} cores used",
        imgs / wall,
        imgs / (c1 - c0),
        (c1 - c0) / wall
    );
}

criterion_group!(benches, bench_train);
criterion_main!(benches);
