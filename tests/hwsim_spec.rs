//! Hardware fault specification files: the shipped examples load and fit a
//! network, every validation rule gives an error naming the file, the key
//! and the rule, sampling is deterministic per (seed, chip, image), and the
//! sampled counts match the rates (4 sigma).

mod engine_common;

use std::path::{Path, PathBuf};

use engine_common::images;
use ftnas::accel::description::{Accelerator, BandwidthMode, Buffers, Dram, Kind, Systolic};
use ftnas::accel::Dataflow;
use ftnas::fixed::Datapath;
use ftnas::hwsim::spec::{Transient, BITS_PER_MBIT, FIT_SECONDS};
use ftnas::hwsim::{
    ChipFault, FaultKind, FaultSite, HwFaultSpec, HwNetwork, HwSpecError, Site, SramBuffer,
};
use ftnas::model::{GraphBuilder, Op, Shape, Weights};
use ftnas::quant;

fn network(rows: usize, cols: usize) -> HwNetwork {
    let mut b = GraphBuilder::new("spec", Shape::new(2, 6, 6));
    let c = b
        .add(
            "c1",
            Op::Conv2d {
                out_channels: 4,
                kernel: (3, 3),
                stride: (1, 1),
                padding: (1, 1),
                dilation: (1, 1),
                groups: 1,
                bias: true,
            },
            &[0],
        )
        .unwrap();
    let f = b.add("flat", Op::Flatten, &[c]).unwrap();
    b.add(
        "fc",
        Op::Linear {
            out_features: 3,
            bias: true,
        },
        &[f],
    )
    .unwrap();
    let g = b.finish();
    let w = Weights::random(&g, 2);
    let q = quant::quantize(&g, &w, Datapath::INT8, &images(g.input_shape(), 2, 3)).unwrap();
    let acc = Accelerator {
        name: "spec-test".into(),
        clock_mhz: 500.0,
        kind: Kind::Systolic,
        systolic: Some(Systolic {
            rows,
            cols,
            dataflow: Dataflow::Os,
        }),
        bitserial: None,
        datapath: Datapath::INT8,
        buffers: Buffers {
            ifmap_kib: 1,
            filter_kib: 2,
            ofmap_kib: 1,
            word_bytes: 1,
            banks: 1,
            double_buffered: true,
        },
        dram: Dram {
            bandwidth: BandwidthMode::Calc,
            words_per_cycle: None,
        },
    };
    HwNetwork::new(&acc, &q).unwrap()
}

fn parse(text: &str) -> Result<HwFaultSpec, HwSpecError> {
    HwFaultSpec::parse(text, Path::new("f.toml"))
}

fn shipped() -> Vec<PathBuf> {
    let dir = Path::new(env!("CARGO_MANIFEST_DIR")).join("accelerators/faults");
    let mut v: Vec<PathBuf> = std::fs::read_dir(dir)
        .unwrap()
        .map(|e| e.unwrap().path())
        .filter(|p| p.extension().is_some_and(|e| e == "toml"))
        .collect();
    v.sort();
    v
}

#[test]
fn shipped_examples_load_and_sample() {
    let net = network(4, 4);
    let files = shipped();
    assert!(files.len() >= 3);
    for p in files {
        let spec = HwFaultSpec::load(&p).unwrap_or_else(|e| panic!("{e}"));
        if spec.rates.keys().any(|s| matches!(s, Site::Sip(_))) {
            // bit-serial sites (run in tests/hwsim_bsnet.rs): not on an array
            assert!(spec.check(&net).is_err(), "{}", p.display());
            continue;
        }
        let chip = spec.sample_chip(1, 0, &net).unwrap();
        let img = chip.for_image(0, &net);
        let codes = vec![0; net.model().input_shape().numel()];
        net.run_codes(&codes, &img)
            .unwrap_or_else(|e| panic!("{}: {e}", p.display()));
    }
}

#[test]
fn fit_converts_with_the_clock() {
    let spec =
        parse("[sites.\"sram.ifmap\"]\nfit_per_mbit = 1000.0\nacceleration = 2.0\n").unwrap();
    let r = spec.rates[&Site::Sram(SramBuffer::Ifmap)];
    assert_eq!(
        r.transient,
        Some(Transient::FitPerMbit {
            fit: 1000.0,
            acceleration: 2.0
        })
    );
    let p = r.transient.unwrap().per_bit_cycle(500.0);
    let want = 2000.0 / FIT_SECONDS / BITS_PER_MBIT / 5e8;
    assert!((p - want).abs() <= 1e-12 * want);
    assert!((p - 1.06e-24).abs() < 0.01e-24, "{p}");
}

/// Every rule: (file text, key the message must name, words of the rule).
#[test]
fn every_error_names_file_key_and_rule() {
    let cases: &[(&str, &str, &str)] = &[
        ("", "sites", "no fault"),
        ("[sites.\"pe.acc\"]\nstuck_at_0 = 0.1\n", "sites.\"pe.acc\"", "unknown fault site"),
        ("[sites.\"pe.act_reg\"]\n", "sites.\"pe.act_reg\"", "sets no rate"),
        ("[sites.\"pe.act_reg\"]\nstuck_at_0 = 1.5\n", "stuck_at_0", "probability"),
        ("[sites.\"pe.act_reg\"]\nstuck_at_0 = -0.1\n", "stuck_at_0", "probability"),
        ("[sites.\"pe.act_reg\"]\nstuck_at_0 = 0.6\nstuck_at_1 = 0.6\n", "stuck_at_1", "at most 1"),
        ("[sites.\"pe.act_reg\"]\ntransient_per_bit_cycle = 2.0\n", "transient_per_bit_cycle", "probability"),
        ("[sites.\"pe.act_reg\"]\ntransient_per_bit_cycle = 1e-9\nfit_per_mbit = 10.0\n", "fit_per_mbit", "not both"),
        ("[sites.\"pe.act_reg\"]\nfit_per_mbit = -1.0\n", "fit_per_mbit", ">= 0"),
        ("[sites.\"pe.act_reg\"]\nfit_per_mbit = 1.0\nacceleration = 0.0\n", "acceleration", "> 0"),
        ("[sites.\"pe.act_reg\"]\nstuck_at_1 = 0.1\nacceleration = 2.0\n", "acceleration", "only applies"),
        ("[[fault]]\nsite = \"pe.foo\"\nbit = 0\nrow = 0\ncol = 0\nstuck_at = 1\n", "fault[0].site", "unknown fault site"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = 0\nrow = 0\ncol = 0\n", "fault[0].cycle", "missing"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = 0\nrow = 0\ncol = 0\nlayer = 0\ncycle = 1\nstuck_at = 0\n", "fault[0].stuck_at", "not both"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = 0\nrow = 0\ncol = 0\nstuck_at = 2\n", "fault[0].stuck_at", "0 or 1"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = 0\nrow = 0\ncol = 0\ncycle = 3\n", "fault[0].layer", "needs the layer"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = 0\nrow = 0\ncol = 0\nstuck_at = 1\nimage = 2\n", "fault[0].image", "one layer"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = 0\ncol = 0\nstuck_at = 1\n", "fault[0].row", "PE site"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = 0\nrow = 0\ncol = 0\naddress = 4\nstuck_at = 1\n", "fault[0].address", "not address"),
        ("[[fault]]\nsite = \"sram.ofmap\"\nbit = 0\nstuck_at = 1\n", "fault[0].address", "SRAM site"),
        ("[[fault]]\nsite = \"sram.ofmap\"\nbit = 0\naddress = 1\ncol = 2\nstuck_at = 1\n", "fault[0].col", "not row/col"),
    ];
    for (text, key, rule) in cases {
        let e = parse(text).unwrap_err();
        assert!(matches!(e, HwSpecError::Invalid { .. }), "{text}: {e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("f.toml: key `"), "{msg}");
        assert!(msg.contains(key), "{text}: `{msg}` should name {key}");
        assert!(msg.contains(rule), "{text}: `{msg}` should say {rule}");
    }
}

#[test]
fn unknown_keys_and_bad_types_are_parse_errors_with_a_line() {
    for (text, words) in [
        ("[sites.\"pe.act_reg\"]\nstuck_at0 = 0.1\n", "unknown field"),
        ("bogus = 1\n", "unknown field"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nbit = \"x\"\n", "line 3"),
        ("[[fault]]\nsite = \"pe.act_reg\"\nrow = 0\n", "bit"),
    ] {
        let e = parse(text).unwrap_err();
        assert!(matches!(e, HwSpecError::Parse { .. }), "{text}: {e:?}");
        let msg = e.to_string();
        assert!(msg.starts_with("f.toml: "), "{msg}");
        assert!(msg.contains(words), "{text}: `{msg}` should say {words}");
    }
    let e = HwFaultSpec::load(Path::new("/nonexistent/f.toml")).unwrap_err();
    assert!(
        e.to_string().contains("/nonexistent/f.toml: cannot read"),
        "{e}"
    );
}

#[test]
fn explicit_faults_are_checked_against_the_network() {
    let net = network(4, 4);
    let words = net.sram_words(SramBuffer::Ifmap);
    let cases = [
        (
            "site = \"pe.act_reg\"\nrow = 4\ncol = 0\nbit = 0\nstuck_at = 1",
            "outside the 4x4 array",
        ),
        (
            "site = \"pe.act_reg\"\nrow = 0\ncol = 0\nbit = 8\nstuck_at = 1",
            "bit 8 does not exist",
        ),
        (
            "site = \"pe.mult_out\"\nrow = 0\ncol = 0\nbit = 15\nlayer = 2\ncycle = 0",
            "layer 2 does not exist",
        ),
        (
            "site = \"pe.psum_reg\"\nrow = 0\ncol = 0\nbit = 31\nlayer = 0\ncycle = 99999999",
            "past the end of the layer",
        ),
        (
            &*format!("site = \"sram.ifmap\"\naddress = {words}\nbit = 0\nstuck_at = 0"),
            "outside sram.ifmap",
        ),
        (
            "site = \"sram.filter\"\naddress = 0\nbit = 8\nstuck_at = 0",
            "8-bit codes",
        ),
    ];
    for (body, rule) in cases {
        let spec = parse(&format!("[[fault]]\n{body}\n")).unwrap();
        let e = spec.sample_chip(0, 0, &net).unwrap_err().to_string();
        assert!(e.contains("f.toml: key `fault[0]`"), "{e}");
        assert!(e.contains(rule), "{body}: `{e}` should say {rule}");
    }
}

#[test]
fn explicit_faults_land_where_written() {
    let net = network(4, 4);
    let spec = parse(
        "[[fault]]\nsite = \"pe.psum_reg\"\nrow = 1\ncol = 2\nbit = 20\nlayer = 1\ncycle = 7\nimage = 3\n\
         [[fault]]\nsite = \"sram.filter\"\naddress = 3\nbit = 6\nstuck_at = 1\n",
    )
    .unwrap();
    let chip = spec.sample_chip(5, 9, &net).unwrap();
    assert_eq!(chip.permanent.len(), 1);
    let ChipFault::Sram(s) = chip.permanent[0] else {
        panic!("sram fault expected")
    };
    assert_eq!(
        (s.buffer, s.address, s.bit, s.kind),
        (SramBuffer::Filter, 3, 6, FaultKind::StuckAt1)
    );
    assert!(chip.for_image(2, &net).transient.is_empty());
    let img = chip.for_image(3, &net);
    assert_eq!(img.transient.len(), 1);
    let f = img.transient[0];
    assert_eq!(f.layer, 1);
    let ChipFault::Pe(p) = f.fault else {
        panic!("pe fault expected")
    };
    assert_eq!(
        (p.site, p.row, p.col, p.bit, p.kind),
        (FaultSite::PsumReg, 1, 2, 20, FaultKind::Flip { cycle: 7 })
    );
}

#[test]
fn sampling_is_deterministic_per_seed_chip_and_image() {
    let net = network(3, 3);
    let spec = parse(
        "[sites.\"pe.weight_reg\"]\nstuck_at_0 = 0.01\nstuck_at_1 = 0.01\ntransient_per_bit_cycle = 1e-4\n\
         [sites.\"sram.ofmap\"]\ntransient_per_bit_cycle = 1e-6\nstuck_at_1 = 1e-3\n",
    )
    .unwrap();
    let a = spec.sample_chip(4, 1, &net).unwrap();
    assert_eq!(a, spec.sample_chip(4, 1, &net).unwrap());
    assert_ne!(a.permanent, spec.sample_chip(4, 2, &net).unwrap().permanent);
    assert_ne!(a.permanent, spec.sample_chip(5, 1, &net).unwrap().permanent);
    assert_eq!(a.for_image(7, &net), a.for_image(7, &net));
    assert_ne!(
        a.for_image(7, &net).transient,
        a.for_image(8, &net).transient
    );
    // Every sampled fault is valid for the network.
    for f in &a.permanent {
        net.check_fault(None, f).unwrap();
    }
    for f in &a.for_image(7, &net).transient {
        net.check_fault(Some(f.layer), &f.fault).unwrap();
    }
}

/// `|count - n p| < 4 sqrt(n p (1-p))`.
fn within_4_sigma(count: usize, n: f64, p: f64, what: &str) {
    let mean = n * p;
    let sd = (n * p * (1.0 - p)).sqrt();
    assert!(
        (count as f64 - mean).abs() < 4.0 * sd,
        "{what}: {count} sampled, expected {mean} +- {sd}"
    );
}

#[test]
fn sampled_counts_match_the_rates() {
    let net = network(8, 8);
    let spec = parse(
        "[sites.\"pe.psum_reg\"]\nstuck_at_0 = 0.002\nstuck_at_1 = 0.006\ntransient_per_bit_cycle = 1e-5\n\
         [sites.\"sram.filter\"]\nstuck_at_1 = 0.003\nfit_per_mbit = 1e12\nacceleration = 2e9\n\
         [sites.\"pe.mult_out\"]\ntransient_per_bit_cycle = 1e-5\n",
    )
    .unwrap();
    let chips = 40u64;
    let psum_bits = Site::Pe(FaultSite::PsumReg).bits(&net) as f64;
    let filter_bits = Site::Sram(SramBuffer::Filter).bits(&net) as f64;
    let (mut s0, mut s1, mut f1) = (0usize, 0usize, 0usize);
    let mut transients = [0usize; 3];
    for chip in 0..chips {
        let c = spec.sample_chip(11, chip, &net).unwrap();
        for f in &c.permanent {
            match (f, f.kind()) {
                (ChipFault::Pe(_), FaultKind::StuckAt0) => s0 += 1,
                (ChipFault::Pe(_), FaultKind::StuckAt1) => s1 += 1,
                (ChipFault::Sram(_), FaultKind::StuckAt1) => f1 += 1,
                other => panic!("unexpected {other:?}"),
            }
        }
        for f in c.for_image(chip, &net).transient {
            let i = match f.fault.site_name() {
                "pe.psum_reg" => 0,
                "sram.filter" => 1,
                "pe.mult_out" => 2,
                s => panic!("unexpected site {s}"),
            };
            transients[i] += 1;
        }
    }
    let n = chips as f64;
    within_4_sigma(s0, n * psum_bits, 0.002, "pe.psum_reg stuck-at-0");
    within_4_sigma(s1, n * psum_bits, 0.006, "pe.psum_reg stuck-at-1");
    within_4_sigma(f1, n * filter_bits, 0.003, "sram.filter stuck-at-1");
    let cycles = net.cycles() as f64;
    let fit_p = 2e21 / FIT_SECONDS / BITS_PER_MBIT / 5e8;
    for (i, (site, p)) in [
        (Site::Pe(FaultSite::PsumReg), 1e-5),
        (Site::Sram(SramBuffer::Filter), fit_p),
        (Site::Pe(FaultSite::MultOut), 1e-5),
    ]
    .into_iter()
    .enumerate()
    {
        within_4_sigma(
            transients[i],
            n * site.bits(&net) as f64 * cycles,
            p,
            site.name(),
        );
    }
    assert!(
        transients.iter().chain([&s0, &s1, &f1]).all(|&c| c > 50),
        "{transients:?} {s0} {s1} {f1}"
    );
    let expect = spec.expected_transients_per_image(&net);
    let total: usize = transients.iter().sum();
    assert!(
        (total as f64 / n - expect).abs() < 4.0 * (expect / n).sqrt(),
        "{total} vs {expect}"
    );
}
