//! The search loop through the library on real Fashion-MNIST images: the
//! RL (LSTM) strategy with a hardware penalty is deterministic, records
//! cycles and MACs, resumes exactly from a checkpoint, and its super-net
//! training lowers the loss of the shared weights.

use ftnas::accel::Accelerator;
use ftnas::data::{self, Split};
use ftnas::fault::FaultModel;
use ftnas::search::driver::SearchData;
use ftnas::search::lstm::RlConfig;
use ftnas::search::{CyclePenalty, OpSet, Search, SearchConfig, SearchSpace, Strategy};

fn data() -> SearchData {
    let full = data::load(None, Split::Train).unwrap().take(240);
    let (train, reward) = full.split_off_validation(0.2, 1).unwrap();
    let calib = train.images[..16 * train.shape.numel()].to_vec();
    SearchData {
        train,
        reward,
        calib,
    }
}

fn config(strategy: Strategy, seed: u64) -> SearchConfig {
    let mut space = SearchSpace::paper(OpSet::Weight);
    space.init_channels = 4;
    space.layers = 3;
    space.steps = 2;
    let faults = FaultModel::parse_weight_flag("adsaf:0.08").unwrap();
    let mut cfg = SearchConfig::new(space, faults, 5);
    cfg.strategy = strategy;
    cfg.train.batch = 16;
    cfg.train.qat_warmup_steps = 2;
    cfg.reward.beta = 0.2;
    cfg.reward.penalty = Some(CyclePenalty {
        target: 20_000,
        lambda: 0.5,
        hard: false,
    });
    cfg.rl = RlConfig {
        hidden: 16,
        ..RlConfig::paper()
    };
    cfg.population = 3;
    cfg.sample = 2;
    cfg.seed = seed;
    cfg
}

fn accel() -> Accelerator {
    Accelerator::load(
        &std::path::Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/edge_16x16_os.toml"),
    )
    .unwrap()
}

#[test]
fn rl_search_is_deterministic_and_hardware_aware() {
    let d = data();
    let acc = accel();
    let run = |seed| {
        let mut s = Search::new(config(Strategy::Rl, seed), &d, Some(&acc)).unwrap();
        while !s.finished() {
            s.step().unwrap();
        }
        s.log
    };
    let a = run(7);
    let b = run(7);
    assert_eq!(a, b);
    assert_eq!(a.len(), 5);
    for c in &a {
        let cycles = c.cycles.expect("cycles with an accelerator");
        assert!(cycles > 0 && c.macs > 0 && c.params > 0);
        let base = 0.8 * c.clean_acc + 0.2 * c.fault_acc;
        let pen = 0.5 * (cycles as f64 / 20_000.0 - 1.0).max(0.0);
        assert!((c.reward - (base - pen)).abs() < 1e-12, "{c:?}");
        assert!((0.0..=1.0).contains(&c.clean_acc) && (0.0..=1.0).contains(&c.fault_acc));
    }
    let other = run(8);
    assert_ne!(a, other, "another seed gives another search");
}

#[test]
fn checkpoint_resume_is_exact_for_both_strategies() {
    let d = data();
    for strategy in [Strategy::Evolution, Strategy::Rl] {
        let dir = tempfile::tempdir().unwrap();
        // the RL run also scores each candidate on two chips
        let config = |strategy, seed| {
            let mut c = config(strategy, seed);
            if strategy == Strategy::Rl {
                c.reward_chips = 2;
            }
            c
        };
        let mut whole = Search::new(config(strategy, 2), &d, None).unwrap();
        while !whole.finished() {
            whole.step().unwrap();
        }
        let mut first = Search::new(config(strategy, 2), &d, None).unwrap();
        first.step().unwrap();
        first.step().unwrap();
        first.save(dir.path()).unwrap();
        drop(first);
        let mut other_chips = config(strategy, 2);
        other_chips.reward_chips += 1;
        assert!(
            Search::resume(other_chips, &d, None, dir.path()).is_err(),
            "a resume with another number of reward chips is refused"
        );
        let mut rest = Search::resume(config(strategy, 2), &d, None, dir.path()).unwrap();
        assert_eq!(rest.step, 2);
        while !rest.finished() {
            rest.step().unwrap();
        }
        assert_eq!(rest.log, whole.log, "{strategy:?}");
        assert_eq!(rest.supernet, whole.supernet, "{strategy:?}");
        assert!(
            rest.step().is_err(),
            "stepping a finished search is an error"
        );
    }
}

#[test]
fn supernet_training_lowers_the_loss_of_shared_weights() {
    use ftnas::search::supernet::super_train_config;
    use ftnas::search::SuperNet;
    use ftnas::train::Ftt;
    let d = data();
    let cfg = config(Strategy::Evolution, 1);
    let sp = &cfg.space;
    let mut tcfg = super_train_config(&cfg.train);
    tcfg.lr = 0.05;
    tcfg.qat_warmup_steps = 10;
    tcfg.ftt = Some(Ftt {
        model: cfg.faults.clone(),
        alpha: 0.5,
    });
    let g =
        sp.random(&mut <rand_xoshiro::Xoshiro256PlusPlus as rand::SeedableRng>::seed_from_u64(3));
    let graph = sp.spec(&g).build(d.train.shape).unwrap();
    let mut net = SuperNet::new(0);
    let numel = d.train.shape.numel();
    let (b, steps) = (32, 40);
    let mut losses = vec![];
    for s in 0..steps {
        let i = (s * b) % (d.train.len() - b);
        let st = net
            .train_step(
                sp,
                &graph,
                &g,
                &tcfg,
                s,
                steps,
                &d.train.images[i * numel..(i + b) * numel],
                &d.train.labels[i..i + b],
            )
            .unwrap();
        losses.push(st.loss);
    }
    let first: f64 = losses[..10].iter().sum::<f64>() / 10.0;
    let last: f64 = losses[steps - 10..].iter().sum::<f64>() / 10.0;
    assert!(last < 0.8 * first, "loss {first} -> {last}: {losses:?}");
    // the reward forward of the trained shared weights beats chance
    let (params, _) = net.params(&graph, &g, sp.layers).unwrap();
    let trained = ftnas::train::Network::new(&graph, params);
    let acc = |trials| {
        ftnas::search::reward::accuracies(
            &trained,
            &d.reward.images,
            &d.reward.labels,
            &d.calib,
            tcfg.datapath,
            &cfg.faults,
            5,
            trials,
        )
    };
    let (clean, fault) = acc(0..1);
    assert!(clean > 0.3, "clean accuracy {clean}");
    assert!((0.0..=1.0).contains(&fault));
    // several chips: the faulty accuracy is the mean of the single-chip
    // ones (same clean accuracy), and the chips differ
    let singles: Vec<f64> = (0..4u64)
        .map(|t| {
            let (c, f) = acc(t..t + 1);
            assert_eq!(c, clean);
            f
        })
        .collect();
    assert_eq!(singles[0], fault);
    let (c4, f4) = acc(0..4);
    assert_eq!(c4, clean);
    let mean = singles.iter().sum::<f64>() / 4.0;
    assert!(
        (f4 - mean).abs() < 1e-12,
        "{f4} vs mean {mean} of {singles:?}"
    );
    assert!(
        singles.iter().any(|&f| f != singles[0]),
        "four adSAF chips scored alike: {singles:?}"
    );
}
