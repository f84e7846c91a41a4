//! Command-line interface: `kefu-edge -c conf/` runs the server, `-t` checks the
//! configuration like `nginx -t`, and the subcommands run offline (`crate::offline`).
//!
//! Every command returns `Result<(), Failure>`; `main` prints the failure and exits with
//! status 1, so the commands say what went wrong and nothing else.

use std::path::{Path, PathBuf};

use clap::{Parser, Subcommand};

use crate::config::{Config, ConfigErrors};

#[derive(Parser, Debug)]
#[command(
    name = "kefu-edge",
    version,
    about = "Edge tier for customer-service bots, on Pingora"
)]
pub struct Cli {
    /// Configuration directory (server.yaml, edge.yaml, limits.yaml, intents.yaml, post.yaml,
    /// upstreams.yaml).
    #[arg(short = 'c', long = "conf", default_value = "conf", global = true)]
    pub conf: PathBuf,

    /// Check the configuration (every file, every referenced file, every stage built) and
    /// exit: 0 and `configuration ok`, or non-zero and one line per error.
    #[arg(short = 't', long = "test")]
    pub test: bool,

    /// Take over the listening sockets of a running instance (after it got SIGQUIT).
    #[arg(short = 'u', long = "upgrade")]
    pub upgrade: bool,

    /// Run in the background (systemd users leave this off).
    #[arg(short = 'd', long = "daemon")]
    pub daemon: bool,

    #[command(subcommand)]
    pub command: Option<Command>,
}

#[derive(Subcommand, Debug)]
pub enum Command {
    /// Read one message per line on stdin and print `intent<TAB>confidence<TAB>stage`, the
    /// decision the server makes, without a server.
    Classify {
        /// Instead of stdin, score a `text<TAB>intent` file: accuracy, fast-path coverage and
        /// precision, per-intent precision/recall, worst confusions.
        #[arg(long, value_name = "FILE")]
        eval: Option<PathBuf>,
        /// Also run the model stage (model.yaml's active version) on the messages the fast
        /// path hands on, and report its intent and probability for them.
        #[arg(long)]
        with_model: bool,
        /// Each stdin line is `prev_intent<TAB>prev_text<TAB>text`: the message with the
        /// dialogue's previous turn, decided as the server decides a follow-up (`-<TAB><TAB>text`
        /// for a first turn).
        #[arg(long, conflicts_with = "eval")]
        context: bool,
    },
    /// Score the dialogue context on written dialogues (models/data/dialogues.tsv): intent
    /// accuracy of every turn decided alone and with the dialogue so far, and the order
    /// slot.
    EvalDialogues {
        /// Written dialogues; with `--real`, the labels of real ones
        /// (models/eval/jddc_dialogues.tsv).
        #[arg(default_value = "models/data/dialogues.tsv")]
        file: PathBuf,
        /// Also run the model stage on the turns the fast path hands on (as the server
        /// does), instead of scoring the router's guess there.
        #[arg(long)]
        with_model: bool,
        /// Real dialogues: FILE labels the shopper turns of the JDDC chat sample given by
        /// `--chat`; every turn is answered as the server answers it (answers at the edge,
        /// hand-offs and why, intent accuracy by kind of turn).
        #[arg(long, requires = "chat")]
        real: bool,
        /// The JDDC 2019 chat sample (`data/chat_0.1per.txt` of
        /// github.com/EndlessLethe/jddc2019-3th-retrieve-model).
        #[arg(long, value_name = "FILE")]
        chat: Option<PathBuf>,
        /// With `--real`: write every scored turn (session, turn, kind, wanted and given
        /// intent, source, hand-off reason, text) to FILE, for error analysis on the
        /// development labels.
        #[arg(long, value_name = "FILE", requires = "real")]
        trace: Option<PathBuf>,
    },
    /// Score every operator keyword rule of intents.yaml on the training split: how often it
    /// decided and how often rightly, worst first.
    AuditKeywords {
        #[command(flatten)]
        data: CorpusFlags,
    },
    /// Train the router from the corpus (and the JDDC questions), choose its thresholds on
    /// the validation split, write the model and its manifest.
    TrainRouter {
        #[command(flatten)]
        data: CorpusFlags,
        /// Output directory for router.bin and manifest.json.
        #[arg(long, default_value = "models/router")]
        out: PathBuf,
        /// Where the validation splits are written (JDDC text must stay out of git).
        #[arg(long, default_value = "target/router-eval")]
        eval_dir: PathBuf,
        /// Fast-path precision the thresholds must reach on the authored validation split.
        #[arg(long, default_value_t = 0.97)]
        precision_target: f64,
        /// Fast-path precision the thresholds must reach on the JDDC validation split.
        #[arg(long, default_value_t = 0.95)]
        jddc_precision_target: f64,
        #[command(flatten)]
        params: TrainFlags,
    },
    /// Translate an nginx/OpenResty configuration (following `include`) into a kefu-edge
    /// configuration directory: the `-c` directory copied, with edge.yaml, limits.yaml,
    /// upstreams.yaml and server.yaml's listeners from the nginx files; what was not
    /// translated is listed with file:line and why (DIR/IMPORT.txt). The result is checked
    /// like `-t`.
    ImportNginx {
        /// The main nginx.conf.
        file: PathBuf,
        /// Output directory.
        #[arg(short = 'o', long = "out", default_value = "imported-conf")]
        out: PathBuf,
    },
    /// Train the reply filter's match judge on written examples and choose its penalty and
    /// threshold on the development lists: prints the grid and the chosen `exempt_below`
    /// for post.yaml, writes the weights.
    TrainFilterJudge {
        /// Directory of `label<TAB>word<TAB>text` files (label `mask` or `clean`).
        #[arg(long, default_value = "models/data/filter_train")]
        train: PathBuf,
        /// Development clean replies (one per line): none may change.
        #[arg(long, default_value = "models/data/filter_dev_clean.txt")]
        dev_clean: PathBuf,
        /// Development lists of `text<TAB>word` that must be masked (evasions, plain uses).
        #[arg(
            long,
            num_args = 1..,
            default_values = ["models/data/filter_dev_evasions.tsv", "models/data/filter_dev_plain.tsv"]
        )]
        dev_masked: Vec<PathBuf>,
        /// The weights file to write.
        #[arg(long, default_value = "conf/words/filter_judge.tsv")]
        out: PathBuf,
    },
    /// Write the router's training and validation splits, with the fast-path decision on
    /// each validation line, for the model pipeline in `models/` (which trains on exactly
    /// these splits).
    ExportSplits {
        #[command(flatten)]
        data: CorpusFlags,
        /// Output directory (JDDC text is written there: keep it out of git).
        #[arg(long, default_value = "target/model-data")]
        out: PathBuf,
    },
}

/// Where the labelled messages come from.
#[derive(clap::Args, Debug)]
pub struct CorpusFlags {
    /// The project's corpus: one `<intent>.txt` per intent.
    #[arg(long, default_value = "models/data/corpus")]
    pub corpus: PathBuf,
    /// Directory with jddc_intents_dev.tsv, jddc_intents_extra.tsv, jddc_to_kefu.tsv.
    #[arg(long, default_value = "../shared/data")]
    pub jddc: PathBuf,
    /// Use the project's corpus alone.
    #[arg(long)]
    pub no_jddc: bool,
    /// Correct the JDDC training labels with this adjudication (ids only), e.g.
    /// models/data/jddc_train_adjudication.tsv; the shipped model is trained without (see
    /// models/README.md).
    #[arg(long)]
    pub jddc_adjudication: Option<PathBuf>,
    /// Train only on the JDDC lines whose blind label (this file, ids only, e.g.
    /// models/data/jddc_blind_train.tsv) agrees with the published one.
    #[arg(long)]
    pub jddc_train_confirmed: Option<PathBuf>,
    /// Choose the thresholds on the JDDC development lines whose blind label (this file,
    /// e.g. models/data/jddc_blind_dev.tsv) agrees with the published one.
    #[arg(long)]
    pub jddc_dev_confirmed: Option<PathBuf>,
    /// Also report the test figures on the confirmed JDDC test lines.
    #[arg(long, default_value = "models/eval/jddc_blind_test.tsv")]
    pub jddc_test_blind: PathBuf,
}

impl CorpusFlags {
    pub fn jddc_dir(&self) -> Option<PathBuf> {
        (!self.no_jddc).then(|| self.jddc.clone())
    }
}

/// Fitting parameters (defaults: the shipped model's).
#[derive(clap::Args, Debug)]
pub struct TrainFlags {
    /// Hash buckets for token and token-pair features.
    #[arg(long)]
    pub buckets: Option<u32>,
    /// Training messages a feature needs to get a weight.
    #[arg(long)]
    pub min_count: Option<u32>,
    /// Inverse L2 penalty (larger: closer fit).
    #[arg(long)]
    pub c: Option<f64>,
    /// L-BFGS iteration limit.
    #[arg(long)]
    pub max_iters: Option<u64>,
    /// Share of each training target taken from the served model (0 to 1).
    #[arg(long)]
    pub teacher_weight: Option<f64>,
    /// Also fit the JDDC questions without a kefu counterpart, at the served model's view.
    #[arg(long)]
    pub teacher_unmapped: bool,
    /// How much a real (JDDC) training question counts against a corpus line (default 1).
    #[arg(long)]
    pub jddc_weight: Option<f64>,
}

/// Why a command failed, for `main` to print (each line after `kefu-edge: `) before it exits
/// with status 1.
#[derive(Debug)]
pub enum Failure {
    /// One message, printed as `kefu-edge: {0:#}` (the error and its context chain).
    Error(anyhow::Error),
    /// Every error of a configuration directory, one line each; with the directory, a last
    /// line that says it is invalid and how many errors it has (the server's and `-t`'s
    /// wording).
    Config(ConfigErrors, Option<PathBuf>),
    /// Nothing to say: the output could not be written (a closed pipe, a full disk).
    Silent,
}

impl<E: Into<anyhow::Error>> From<E> for Failure {
    fn from(e: E) -> Failure {
        Failure::Error(e.into())
    }
}

/// Load and validate the configuration directory, as the server and the decision commands
/// use it (models checked).
pub fn load_config(dir: &Path) -> Result<Config, Failure> {
    Config::load(dir).map_err(|errors| Failure::Config(errors, Some(dir.to_owned())))
}
