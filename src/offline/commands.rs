//! The CLI's offline commands: `classify` (stdin or `--eval`), `eval-dialogues`,
//! `train-router`, `audit-keywords` and `export-splits`. Each turns its flags into the work of
//! the modules beside it and prints the result; a failure goes back to `main` to be printed.

use std::collections::BTreeMap;
use std::io::{BufRead, Write};
use std::path::{Path, PathBuf};

use super::corpus::Origin;
use super::decider::Decider;
use super::dialogues;
use super::eval::Evaluation;
use super::filter_judge;
use super::real_dialogues;
use super::train::{TrainOptions, audit_keywords, export_splits, train};
use crate::cli::{Command, CorpusFlags, Failure, TrainFlags};
use crate::config::Config;
use crate::dialog::{Context, Slots};
use crate::intent::Intent;
use crate::router::manifest::TrainParams;

/// Run one subcommand on the configuration directory `dir`.
pub fn run(dir: &Path, command: Command) -> Result<(), Failure> {
    match command {
        Command::Classify {
            eval: None,
            with_model,
            context,
        } => classify(dir, with_model, context),
        Command::Classify {
            eval: Some(file),
            with_model,
            ..
        } => evaluate(dir, &file, with_model),
        Command::EvalDialogues {
            file,
            with_model,
            real: true,
            chat: Some(chat),
            trace,
        } => eval_real_dialogues(dir, &file, &chat, with_model, trace.as_deref()),
        Command::EvalDialogues {
            file, with_model, ..
        } => eval_dialogues(dir, &file, with_model),
        Command::TrainRouter {
            data,
            out,
            eval_dir,
            precision_target,
            jddc_precision_target,
            params,
        } => {
            let opts = TrainOptions {
                out_dir: out,
                eval_dir,
                params: train_params(&params),
                precision_targets: BTreeMap::from([
                    (Origin::Authored, precision_target),
                    (Origin::Jddc, jddc_precision_target),
                ]),
                ..data_only(data)
            };
            train_router(dir, &opts)
        }
        Command::AuditKeywords { data } => audit(dir, &data_only(data)),
        Command::ExportSplits { data, out } => export(dir, &data_only(data), &out),
        Command::ImportNginx { file, out } => import_nginx(dir, &file, &out),
        Command::TrainFilterJudge {
            train,
            dev_clean,
            dev_masked,
            out,
        } => filter_judge::train_command(dir, &train, &dev_clean, &dev_masked, &out)
            .map_err(|e| Failure::Error(e.context("train-filter-judge"))),
    }
}

/// The fitting parameters of the flags, the shipped model's where a flag is not given.
fn train_params(flags: &TrainFlags) -> TrainParams {
    let d = TrainParams::default();
    TrainParams {
        buckets: flags.buckets.unwrap_or(d.buckets),
        min_count: flags.min_count.unwrap_or(d.min_count),
        c: flags.c.unwrap_or(d.c),
        max_iters: flags.max_iters.unwrap_or(d.max_iters),
        teacher_weight: flags.teacher_weight.unwrap_or(d.teacher_weight),
        teacher_unmapped: flags.teacher_unmapped || d.teacher_unmapped,
        jddc_weight: flags.jddc_weight.unwrap_or(d.jddc_weight),
        ..d
    }
}

/// Options that only say where the labelled messages are (no training).
fn data_only(data: CorpusFlags) -> TrainOptions {
    TrainOptions {
        jddc_dir: data.jddc_dir(),
        jddc_adjudication: data.jddc_adjudication,
        jddc_train_confirmed: data.jddc_train_confirmed,
        jddc_dev_confirmed: data.jddc_dev_confirmed,
        jddc_test_blind: Some(data.jddc_test_blind),
        corpus_dir: data.corpus,
        out_dir: PathBuf::new(),
        eval_dir: PathBuf::new(),
        params: TrainParams::default(),
        precision_targets: BTreeMap::new(),
    }
}

/// `classify`: one message per line on stdin, `intent<TAB>confidence<TAB>stage` per line out.
/// With `context`, a line is `prev_intent<TAB>prev_text<TAB>text` (`-` for no previous turn):
/// the decision of the server for a message whose dialogue's newest turn is that one.
fn classify(dir: &Path, with_model: bool, context: bool) -> Result<(), Failure> {
    let decider = Decider::open(dir, with_model)?;
    let stdin = std::io::stdin().lock();
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    for (n, line) in stdin.lines().enumerate() {
        let Ok(line) = line else {
            return Err(anyhow::anyhow!("stdin is not UTF-8").into());
        };
        let line = line.trim_end_matches('\r');
        let d = if context {
            let (previous, text) = parse_context_line(line)
                .map_err(|e| anyhow::anyhow!("stdin line {}: {e}", n + 1))?;
            let recent: Vec<Intent> = previous.iter().map(|p| p.0).collect();
            let slots = Slots::extract(text);
            let ctx = Context {
                recent: &recent,
                previous_text: previous.map(|p| p.1),
                order: slots.order.as_deref(),
                handed_to_human: false,
            };
            decider.decide_in_context(text, &ctx).0
        } else {
            decider.decide(line)
        };
        writeln!(
            out,
            "{}\t{:.4}\t{}",
            d.intent,
            d.confidence,
            d.stage.as_str()
        )
        .map_err(|_| Failure::Silent)?;
    }
    out.flush().map_err(|_| Failure::Silent)
}

/// `prev_intent<TAB>prev_text<TAB>text`; a previous intent of `-` means a first turn.
fn parse_context_line(line: &str) -> anyhow::Result<(Option<(Intent, &str)>, &str)> {
    let mut cols = line.splitn(3, '\t');
    let (Some(intent), Some(previous), Some(text)) = (cols.next(), cols.next(), cols.next()) else {
        anyhow::bail!("expected `prev_intent<TAB>prev_text<TAB>text`");
    };
    if intent == "-" {
        return Ok((None, text));
    }
    Ok((Some((intent.parse::<Intent>()?, previous)), text))
}

/// `classify --eval FILE`: score a `text<TAB>intent` file and print the report.
fn evaluate(dir: &Path, file: &Path, with_model: bool) -> Result<(), Failure> {
    let decider = Decider::open(dir, with_model)?;
    let text =
        std::fs::read_to_string(file).map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
    let mut eval = Evaluation::default();
    for (n, line) in text.lines().enumerate() {
        if line.starts_with('#') || line.trim().is_empty() {
            continue;
        }
        let parsed = line
            .rsplit_once('\t')
            .map(|(t, i)| (t, i.trim().parse::<Intent>()));
        let Some((message, Ok(truth))) = parsed else {
            let at = format!("{}:{}", file.display(), n + 1);
            return Err(anyhow::anyhow!("{at}: expected `text<TAB>intent`").into());
        };
        eval.add(truth, &decider.decide(message));
    }
    print!("{}", eval.report());
    Ok(())
}

/// `import-nginx`: translate, write, report, then check the result like `-t`.
fn import_nginx(base: &Path, file: &Path, out: &Path) -> Result<(), Failure> {
    let report = crate::migrate::import(file, base, out)
        .map_err(|e| e.context(format!("import-nginx {}", file.display())))?;
    print!("{report}");
    println!("\nwrote {}", out.display());
    crate::server::check(out)
}

/// `eval-dialogues --real`: answer real dialogues as the server does and score them.
fn eval_real_dialogues(
    dir: &Path,
    labels: &Path,
    chat: &Path,
    with_model: bool,
    trace: Option<&Path>,
) -> Result<(), Failure> {
    let decider = Decider::open(dir, with_model)?;
    let run = || -> anyhow::Result<real_dialogues::Report> {
        let chat = real_dialogues::read_chat(chat)?;
        let labels = real_dialogues::read_labels(labels)?;
        let mut trace = match trace {
            Some(path) => Some(std::io::BufWriter::new(
                std::fs::File::create(path)
                    .map_err(|e| anyhow::anyhow!("{}: {e}", path.display()))?,
            )),
            None => None,
        };
        let sink = trace.as_mut().map(|w| w as &mut dyn Write);
        let report = real_dialogues::run(&decider, &chat, &labels, sink)?;
        if let Some(mut w) = trace {
            w.flush()?;
        }
        Ok(report)
    };
    let report = run().map_err(|e| e.context("eval-dialogues --real"))?;
    print!("{report}");
    Ok(())
}

/// `eval-dialogues`: score the dialogue context on written dialogues.
fn eval_dialogues(dir: &Path, file: &Path, with_model: bool) -> Result<(), Failure> {
    let decider = Decider::open(dir, with_model)?;
    let run = || -> anyhow::Result<dialogues::Report> {
        let text = std::fs::read_to_string(file)
            .map_err(|e| anyhow::anyhow!("{}: {e}", file.display()))?;
        let turns = dialogues::parse(&text)?;
        Ok(dialogues::run(&turns, |text, context| {
            decider.decide_in_context(text, context)
        }))
    };
    let report = run().map_err(|e| e.context("eval-dialogues"))?;
    print!("{report}");
    Ok(())
}

/// `train-router`: train, write the model and its manifest, print the reports.
fn train_router(dir: &Path, opts: &TrainOptions) -> Result<(), Failure> {
    let config = Config::load_for_training(dir).map_err(|errors| Failure::Config(errors, None))?;
    let started = std::time::Instant::now();
    let trained = train(&config, opts).map_err(|e| e.context("train-router"))?;
    for (name, report) in &trained.reports {
        println!("== {name}\n{report}");
    }
    let m = &trained.manifest;
    let f = &trained.fit;
    println!(
        "fit: {} rows, {} L-BFGS iterations, loss {:.3} ({})",
        f.rows, f.iterations, f.loss, f.stopped
    );
    println!(
        "wrote {} ({} bytes) and manifest.json to {} in {:.1} s; thresholds: global {:.2}, raised {:?}",
        m.model_file,
        m.model_bytes,
        opts.out_dir.display(),
        started.elapsed().as_secs_f64(),
        m.thresholds.global,
        m.thresholds.per_intent
    );
    Ok(())
}

/// `audit-keywords`: every operator rule on the training split, worst precision first.
fn audit(dir: &Path, opts: &TrainOptions) -> Result<(), Failure> {
    let stats = Config::load_for_training(dir)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|config| audit_keywords(&config, opts))
        .map_err(|e| e.context("audit-keywords"))?;
    // Written with errors handled: `audit-keywords | head` closes the pipe early.
    let mut out = std::io::BufWriter::new(std::io::stdout().lock());
    let write = || -> std::io::Result<()> {
        writeln!(
            out,
            "precision\tdecided\tintent\trule\twrong (true intent: count)"
        )?;
        for s in stats {
            let wrong: Vec<String> = s.wrong.iter().map(|(i, n)| format!("{i}:{n}")).collect();
            writeln!(
                out,
                "{:.3}\t{}\t{}\t{}\t{}",
                s.correct as f64 / s.decided as f64,
                s.decided,
                s.intent,
                s.rule,
                wrong.join(" ")
            )?;
        }
        out.flush()
    };
    match write() {
        Ok(()) => Ok(()),
        Err(e) if e.kind() == std::io::ErrorKind::BrokenPipe => Ok(()),
        Err(e) => Err(anyhow::anyhow!("{e}").into()),
    }
}

/// `export-splits`: the router's three splits, for the model pipeline in `models/`.
fn export(dir: &Path, opts: &TrainOptions, out: &Path) -> Result<(), Failure> {
    let n = Config::load_for_model_training(dir)
        .map_err(|e| anyhow::anyhow!("{e}"))
        .and_then(|config| export_splits(&config, opts, out))
        .map_err(|e| e.context("export-splits"))?;
    println!(
        "wrote {} training, {} development and {} test lines to {}",
        n.train,
        n.dev,
        n.test,
        out.display()
    );
    Ok(())
}
