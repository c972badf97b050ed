//! The shared output layer: CSV quoting, table alignment, SVG structure,
//! atomic writes.

use std::fs;

use ftnas::report::{
    csv_field, log_ticks, to_json_string, write_atomic, write_json, Align, Csv, Plot, Series, Table,
};

#[test]
fn csv_quotes_only_what_needs_it() {
    assert_eq!(csv_field("plain"), "plain");
    assert_eq!(csv_field("1e-5"), "1e-5");
    assert_eq!(csv_field("a,b"), "\"a,b\"");
    assert_eq!(csv_field("say \"hi\""), "\"say \"\"hi\"\"\"");
    assert_eq!(csv_field("two\nlines"), "\"two\nlines\"");
    assert_eq!(csv_field("cr\r"), "\"cr\r\"");
    assert_eq!(csv_field(" padded"), "\" padded\"");
    assert_eq!(csv_field(""), "");

    let mut c = Csv::new(["model", "fault rate", "accuracy"]);
    c.push(["resnet20, 8-bit", "1e-5", "0.608"]).unwrap();
    c.push(["F-FTT-Net", &0.0001f64.to_string(), &0.862f64.to_string()])
        .unwrap();
    assert_eq!(
        c.to_string(),
        "model,fault rate,accuracy\n\"resnet20, 8-bit\",1e-5,0.608\nF-FTT-Net,0.0001,0.862\n"
    );
    assert!(c.push(["only one"]).is_err());

    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("sub/dir/r.csv");
    c.write(&p).unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), c.to_string());
}

#[test]
fn table_aligns_numbers_right_and_text_left() {
    let mut t = Table::new(["layer", "cycles", "util"]);
    t.push(["conv1", "1234", "98.5%"]);
    t.push(["fc", "7", "3.1%"]);
    t.push(["a-long-name", "120000", ""]);
    let s = t.render();
    let lines: Vec<&str> = s.lines().collect();
    assert_eq!(
        lines,
        vec![
            "layer        cycles   util",
            "-----------  ------  -----",
            "conv1          1234  98.5%",
            "fc                7   3.1%",
            "a-long-name  120000",
        ]
    );
    // Numbers end in the same column.
    assert_eq!(
        lines[2].find("1234").unwrap() + 4,
        lines[3].find('7').unwrap() + 1
    );

    let mut forced = Table::new(["id", "x"]).align(0, Align::Left);
    forced.push(["1", "a"]);
    forced.push(["100", "bb", "extra"]);
    let s = forced.render();
    assert_eq!(s, "id   x\n---  --  -----\n1    a\n100  bb  extra\n");
}

/// Balanced start/end tags, nothing outside the root, attribute quotes
/// closed: enough to catch a broken writer.
fn assert_well_formed(svg: &str) {
    let mut stack: Vec<String> = Vec::new();
    let mut rest = svg;
    let mut roots = 0;
    while let Some(start) = rest.find('<') {
        let text = &rest[..start];
        assert!(!text.contains('>'), "stray '>' in text {text:?}");
        if stack.is_empty() {
            assert!(text.trim().is_empty(), "text outside the root: {text:?}");
        }
        let end = rest[start..].find('>').expect("unclosed tag") + start;
        let tag = &rest[start + 1..end];
        assert_eq!(
            tag.matches('"').count() % 2,
            0,
            "unbalanced quotes in <{tag}>"
        );
        assert!(!tag.contains('<'), "'<' inside tag {tag}");
        if let Some(name) = tag.strip_prefix('/') {
            assert_eq!(
                stack.pop().as_deref(),
                Some(name.trim()),
                "mismatched </{name}>"
            );
        } else if !tag.ends_with('/') {
            let name = tag.split_whitespace().next().unwrap().to_string();
            if stack.is_empty() {
                roots += 1;
            }
            stack.push(name);
        } else if stack.is_empty() {
            roots += 1;
        }
        rest = &rest[end + 1..];
    }
    assert!(rest.trim().is_empty());
    assert!(stack.is_empty(), "unclosed: {stack:?}");
    assert_eq!(roots, 1);
}

#[test]
fn line_plot_with_log_x_error_bars_and_bands() {
    let rates = [1e-6, 1e-5, 1e-4, 1e-3, 1e-2];
    let acc_a = [0.86, 0.85, 0.80, 0.62, 0.15];
    let acc_b = [0.68, 0.60, 0.41, 0.12, 0.10];
    let plot = Plot::new(
        "Accuracy under feature faults <MiBB>",
        "fault rate p",
        "accuracy & more",
    )
    .log_x()
    .y_range(0.0, 1.0)
    .series(
        Series::line("F-FTT-Net", rates.iter().copied().zip(acc_a).collect())
            .error_bars(vec![0.01, 0.01, 0.02, 0.03, 0.02]),
    )
    .series(
        Series::line("MobileNet-V2", rates.iter().copied().zip(acc_b).collect())
            .band(acc_b.iter().map(|a| (a - 0.05, a + 0.05)).collect()),
    );
    let svg = plot.to_svg();
    assert_well_formed(&svg);
    assert!(svg.starts_with("<svg xmlns=\"http://www.w3.org/2000/svg\""));
    for want in [
        ">F-FTT-Net</text>",
        ">MobileNet-V2</text>",
        ">fault rate p</text>",
        ">accuracy &amp; more</text>",
        "Accuracy under feature faults &lt;MiBB&gt;",
        r#"class="band""#,
    ] {
        assert!(svg.contains(want), "missing {want}");
    }
    // The x axis is labelled at powers of ten.
    for label in ["1e-6", "1e-5", "1e-4", "0.001", "0.01"] {
        assert!(svg.contains(&format!(">{label}</text>")), "no tick {label}");
    }
    // Linear y ticks inside the fixed range.
    for label in ["0.0", "0.2", "1.0"] {
        assert!(svg.contains(&format!(">{label}</text>")), "no tick {label}");
    }
    assert_eq!(svg.matches("<polyline").count(), 2);
    // 5 error bars of 3 lines each.
    assert_eq!(svg.matches(r#"stroke-width="1.2""#).count(), 15);
    // Deterministic output.
    assert_eq!(svg, plot.to_svg());

    let t = log_ticks(1e-6, 1e-2);
    let exps: Vec<i32> = t.major.iter().map(|v| v.log10().round() as i32).collect();
    assert_eq!(exps, vec![-6, -5, -4, -3, -2]);
    for v in &t.major {
        assert!((v.log10() - v.log10().round()).abs() < 1e-12);
    }
}

#[test]
fn scatter_plot_with_point_labels() {
    let plot = Plot::new("Accuracy vs cycles", "cycles", "accuracy").series(
        Series::scatter("models", vec![(2.1e6, 0.91), (4.5e6, 0.93), (9.8e6, 0.94)])
            .point_labels(vec!["cell-a".into(), "cell-b".into(), "resnet20".into()]),
    );
    let svg = plot.to_svg();
    assert_well_formed(&svg);
    assert_eq!(svg.matches("<circle").count(), 3 + 1);
    assert_eq!(svg.matches("<polyline").count(), 0);
    for want in [
        ">cell-a</text>",
        ">resnet20</text>",
        ">cycles</text>",
        ">models</text>",
    ] {
        assert!(svg.contains(want), "missing {want}");
    }
    // Large tick values in scientific notation.
    assert!(
        svg.contains(">2e6</text>") || svg.contains(">4e6</text>"),
        "{svg}"
    );
}

#[test]
fn empty_and_degenerate_plots_are_still_valid() {
    assert_well_formed(&Plot::new("", "", "").to_svg());
    assert_well_formed(&Plot::new("t", "x", "y").log_y().to_svg());
    let one = Plot::new("t", "x", "y").series(Series::line("only", vec![(3.0, 3.0)]));
    let svg = one.to_svg();
    assert_well_formed(&svg);
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
    let nan = Plot::new("t", "x", "y").log_x().series(Series::line(
        "bad",
        vec![(f64::NAN, 1.0), (-1.0, f64::INFINITY)],
    ));
    let svg = nan.to_svg();
    assert_well_formed(&svg);
    assert!(!svg.contains("NaN") && !svg.contains("inf"));
}

#[test]
fn atomic_write_replaces_and_leaves_no_temp_files() {
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("a/b/result.txt");
    write_atomic(&p, b"first").unwrap();
    write_atomic(&p, b"second, longer").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"second, longer");
    write_atomic(&p, b"3").unwrap();
    assert_eq!(fs::read(&p).unwrap(), b"3");
    let names: Vec<String> = fs::read_dir(p.parent().unwrap())
        .unwrap()
        .map(|e| e.unwrap().file_name().to_string_lossy().into_owned())
        .collect();
    assert_eq!(names, vec!["result.txt".to_string()]);

    // A target that is a directory cannot be replaced: error, no temp file
    // left behind, directory untouched.
    let d = dir.path().join("taken");
    fs::create_dir_all(d.join("inner")).unwrap();
    let e = write_atomic(&d, b"x").unwrap_err().to_string();
    assert!(e.contains("taken"), "{e}");
    let left: Vec<_> = fs::read_dir(dir.path())
        .unwrap()
        .map(|e| e.unwrap().file_name())
        .collect();
    assert_eq!(left.len(), 2, "{left:?}");
    assert!(d.join("inner").is_dir());

    // Many concurrent writers: the file ends as one complete version.
    let q = dir.path().join("race.txt");
    std::thread::scope(|s| {
        for i in 0..8u8 {
            let q = &q;
            s.spawn(move || write_atomic(q, &vec![b'a' + i; 10_000]).unwrap());
        }
    });
    let got = fs::read(&q).unwrap();
    assert_eq!(got.len(), 10_000);
    assert!(got.iter().all(|&b| b == got[0]));
}

#[test]
fn json_is_written_atomically_and_pretty() {
    #[derive(serde::Serialize)]
    struct R {
        model: String,
        accuracy: f64,
    }
    let r = R {
        model: "x".into(),
        accuracy: 0.5,
    };
    let s = to_json_string(&r).unwrap();
    assert_eq!(s, "{\n  \"model\": \"x\",\n  \"accuracy\": 0.5\n}\n");
    let dir = tempfile::tempdir().unwrap();
    let p = dir.path().join("new/r.json");
    write_json(&p, &r).unwrap();
    assert_eq!(fs::read_to_string(&p).unwrap(), s);
}

/// RFC 4180 reader for the round-trip property (quoted fields may hold
/// commas, quotes and line breaks).
fn parse_csv(text: &str) -> Vec<Vec<String>> {
    let mut rows = Vec::new();
    let mut row = Vec::new();
    let mut field = String::new();
    let mut chars = text.chars().peekable();
    let mut quoted = false;
    while let Some(c) = chars.next() {
        if quoted {
            match c {
                '"' if chars.peek() == Some(&'"') => {
                    chars.next();
                    field.push('"');
                }
                '"' => quoted = false,
                c => field.push(c),
            }
        } else {
            match c {
                '"' => quoted = true,
                ',' => row.push(std::mem::take(&mut field)),
                '\n' => {
                    row.push(std::mem::take(&mut field));
                    rows.push(std::mem::take(&mut row));
                }
                c => field.push(c),
            }
        }
    }
    assert!(
        field.is_empty() && row.is_empty(),
        "text must end in a newline"
    );
    rows
}

proptest::proptest! {
    #![proptest_config(proptest::prelude::ProptestConfig::with_cases(128))]

    #[test]
    fn csv_roundtrips_any_fields(
        rows in proptest::collection::vec(
            proptest::collection::vec("[ a-z0-9,\"\n\r\t;.-]{0,6}", 3),
            0..6,
        )
    ) {
        let mut c = Csv::new(["a", "b,c", "d\"e"]);
        for r in &rows {
            c.push(r).unwrap();
        }
        let parsed = parse_csv(&c.to_string());
        proptest::prop_assert_eq!(&parsed[0], &vec!["a".to_string(), "b,c".into(), "d\"e".into()]);
        proptest::prop_assert_eq!(&parsed[1..], &rows[..]);
    }

    #[test]
    fn linear_ticks_cover_the_data_with_nice_steps(a in -1e6f64..1e6, span in 1e-6f64..1e6) {
        let (min, max) = (a, a + span);
        let t = ftnas::report::linear_ticks(min, max, 6);
        proptest::prop_assert!(t.lo <= min && t.hi >= max);
        proptest::prop_assert!((2..=12).contains(&t.major.len()), "{:?}", t.major);
        let m = t.step / 10f64.powf(t.step.log10().floor());
        proptest::prop_assert!([1.0, 2.0, 5.0, 10.0].iter().any(|n| (m - n).abs() < 1e-9), "step {}", t.step);
        for w in t.major.windows(2) {
            proptest::prop_assert!(((w[1] - w[0]) - t.step).abs() <= t.step * 1e-6);
        }
    }

    #[test]
    fn log_ticks_are_powers_of_ten_covering_the_data(e in -15f64..10.0, decades in 0.01f64..20.0) {
        let (min, max) = (10f64.powf(e), 10f64.powf(e + decades));
        let t = log_ticks(min, max);
        proptest::prop_assert!(t.lo <= min * (1.0 + 1e-12) && t.hi >= max * (1.0 - 1e-12));
        proptest::prop_assert!(t.major.len() >= 2 && t.major.len() <= 12);
        for v in &t.major {
            proptest::prop_assert!((v.log10() - v.log10().round()).abs() < 1e-9);
        }
    }

    #[test]
    fn any_plot_is_well_formed(
        name in "[ -~]{0,12}",
        pts in proptest::collection::vec(
            (proptest::num::f64::ANY, proptest::num::f64::ANY), 0..8),
        log_x: bool,
        log_y: bool,
    ) {
        let mut p = Plot::new(name.clone(), name.clone(), "y")
            .series(Series::line(name.clone(), pts.clone()).error_bars(vec![0.1; 8]))
            .series(Series::scatter("s", pts).point_labels(vec![name.clone(); 8]));
        if log_x {
            p = p.log_x();
        }
        if log_y {
            p = p.log_y();
        }
        let svg = p.to_svg();
        assert_well_formed(&svg);
        proptest::prop_assert!(!svg.contains("NaN") && !svg.contains("inf"));
    }
}
