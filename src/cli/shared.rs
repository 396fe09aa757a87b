//! What several commands share: step two of reading the command line (the
//! experiment, the policy, the account and the AWS clients built from what
//! the user typed), the plan built from them, and writing to stdout.

use std::path::Path;

use crate::aws::Aws;
use crate::experiment::{self, Experiment, LoadError};
use crate::model::Vars;
use crate::plan::{self, Plan, PlanError};
use crate::policy::account::{self, Account};
use crate::policy::{self, LoadedPolicy};

use super::{AwsArgs, Error, SafetyArgs};

/// The AWS clients of the standard chain, with the command line's overrides.
pub(super) async fn connect(args: &AwsArgs) -> Result<Aws, Error> {
    Ok(Aws::connect(&args.options()).await?)
}

/// The experiment of `file`: unreadable is a usage error, invalid an input error.
pub(super) fn load_experiment(file: &Path) -> Result<Experiment, Error> {
    experiment::load(file).map_err(|e| match e {
        LoadError::Invalid(errors) => Error::InvalidExperiment {
            file: file.to_path_buf(),
            errors,
        },
        e => Error::UnreadableExperiment(e),
    })
}

/// The policy in force: `explicit`, else the one beside the experiment's
/// folder, else the current directory's, else the built-in default.
pub(super) fn load_policy(
    explicit: Option<&Path>,
    experiment_file: Option<&Path>,
) -> Result<LoadedPolicy, Error> {
    Ok(policy::find_and_load(explicit, experiment_file)?)
}

/// What `run` and `plan` both need before any AWS call: the experiment, the
/// policy in force, the account and the clients.
pub(super) struct Prepared {
    pub(super) exp: Experiment,
    pub(super) policy: LoadedPolicy,
    pub(super) account: Option<Account>,
    pub(super) aws: Aws,
}

/// Builds [`Prepared`] from the command line, in the order a user fixes
/// things: the experiment, then the policy, then the AWS settings.
pub(super) async fn prepare(
    file: &Path,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
) -> Result<Prepared, Error> {
    let exp = load_experiment(file)?;
    let policy = load_policy(safety_args.policy.as_deref(), Some(file))?;
    let aws = connect(aws_args).await?;
    let account = account::detect(safety_args.account.as_deref(), aws_args.profile.as_deref());
    Ok(Prepared {
        exp,
        policy,
        account,
        aws,
    })
}

/// The read-only plan of a run with `seed`.
pub(super) async fn build_plan(p: &Prepared, seed: u64) -> Result<Plan, PlanError> {
    // The run id is chosen when a run starts; a plan names it as a placeholder.
    let vars = Vars {
        asg: p.exp.environment.autoscaling_group.clone(),
        run_id: "<run-id>".to_string(),
        ..Vars::default()
    };
    plan::build(&p.aws, &p.exp, &p.policy, &vars, seed).await
}

/// A seed for random target selection, when the user gave none.
pub(super) fn random_seed() -> u64 {
    use rand::Rng;
    rand::make_rng::<rand::rngs::StdRng>().next_u64()
}

/// Prints to stdout; a closed pipe (`gameday history | head`) is not an error.
pub(super) fn print_text(text: &str) {
    use std::io::Write;
    let _ = std::io::stdout().lock().write_all(text.as_bytes());
}

/// Writes the catalog of the runs store again after runs, when it has one
/// (`output::catalog::refresh`): with an S3 store, its `catalog.json` and
/// every run's record are fetched first and the catalog's files put back.
/// A failure is a warning: it never changes a verdict.
pub(super) async fn refresh_catalog(runs: &crate::store::Runs, policy: Option<&Path>) {
    use crate::output::catalog;
    let refreshed = async {
        if runs.remote.is_some() {
            if !runs
                .pull_top(catalog::JSON_FILE)
                .await
                .map_err(|e| e.to_string())?
            {
                return Ok(());
            }
            runs.pull_all().await.map_err(|e| e.to_string())?;
        }
        let claims = crate::due::claim::SlotStore::shared(&runs.local, runs.remote.clone());
        if catalog::refresh(&runs.local, &claims, policy)
            .await
            .map_err(|e| e.to_string())?
        {
            runs.push_top(&[catalog::HTML_FILE, catalog::MARKDOWN_FILE, catalog::JSON_FILE])
                .await
                .map_err(|e| e.to_string())?;
        }
        Ok::<(), String>(())
    };
    if let Err(e) = refreshed.await {
        eprintln!("warning: the catalog was not refreshed: {e}");
    }
}
