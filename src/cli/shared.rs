//! What several commands share: step two of reading the command line (the
//! experiment, the policy, the account and the AWS clients built from what
//! the user typed), the plan built from them, and writing to stdout.

use std::path::Path;

use crate::aws::{Assumed, Aws};
use crate::experiment::{self, Experiment, LoadError};
use crate::model::AwsTarget;
use crate::model::Vars;
use crate::plan::{self, Plan, PlanError};
use crate::policy::account::{self, Account};
use crate::policy::{self, LoadedPolicy};

use super::{AwsArgs, Error, SafetyArgs};

/// The AWS clients of the standard chain, with the command line's overrides.
pub(super) async fn connect(args: &AwsArgs) -> Result<Aws, Error> {
    Ok(Aws::connect(&args.options()).await?)
}

/// The clients for `target` (an experiment's or a suite entry's `aws:`):
/// its region over the command line's, its role assumed under `session`.
pub(super) async fn connect_to(
    args: &AwsArgs,
    target: &AwsTarget,
    session: &str,
) -> Result<(Aws, Option<Assumed>), Error> {
    if target.is_empty() {
        return Ok((connect(args).await?, None));
    }
    Aws::connect_to(&args.options(), target, session)
        .await
        .map_err(|e| Error::Assume(Box::new(e)))
}

/// The account the policy's `accounts` rule checks: the assumed identity's
/// when a role was assumed, else what is known without an AWS call.
pub(super) fn account_of(
    assumed: Option<&Assumed>,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
) -> Option<Account> {
    match assumed {
        Some(a) => Some(Account {
            id: a.account.clone(),
            source: format!("assumed role {}, sts:GetCallerIdentity", a.role_arn),
        }),
        None => account::detect(safety_args.account.as_deref(), aws_args.profile.as_deref()),
    }
}

/// The session name of a plan's assumed role (`gameday-plan-<id>`): a plan is no run.
pub(super) fn plan_session() -> String {
    crate::model::session_name(&format!("plan-{}", crate::engine::new_run_id()))
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
    /// The role assumed for the experiment's `aws.role_arn`, if any.
    pub(super) assumed: Option<Assumed>,
}

/// Builds [`Prepared`] from the command line, in the order a user fixes
/// things: the experiment, then the policy, then the AWS settings (the
/// experiment's role assumed under `session`).
pub(super) async fn prepare(
    file: &Path,
    safety_args: &SafetyArgs,
    aws_args: &AwsArgs,
    session: &str,
) -> Result<Prepared, Error> {
    let exp = load_experiment(file)?;
    let policy = load_policy(safety_args.policy.as_deref(), Some(file))?;
    let (aws, assumed) = connect_to(aws_args, &exp.aws, session).await?;
    let account = account_of(assumed.as_ref(), safety_args, aws_args);
    Ok(Prepared {
        exp,
        policy,
        account,
        aws,
        assumed,
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
