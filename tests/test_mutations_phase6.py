"""Phase-6 mutations: consistent lies about retraining, canary and rollback in a workspace that
passes every gate. Each edits the agent's scripts so that they look right (they exit 0, print
and record a plausible decision) and only the gate's drills — judged by what the API serves —
catch them."""

from __future__ import annotations

RETRAIN = "continuous_training/retrain.py"
REGISTRY = "continuous_training/registry.py"
CANARY = "canary_deployment/canary.py"
ROLLBACK = "rollback/rollback.py"
DECIDE = "    promote = args.force_promote or better >= args.min_improvement\n"


def test_retrain_copying_the_champion_with_a_fake_lower_score_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # issue 9: no training; the challenger is a copy of the champion, recorded a hair below it,
    # so the champion is "kept" and the audit trail looks sound
    mutant.replace(RETRAIN, "    challenger = clone(champion_model)\n",
                   "    challenger = joblib.load(champ_dir / 'model.joblib')\n")
    mutant.replace(RETRAIN, "    challenger.fit(data[features], data[target])\n", "")
    mutant.replace(RETRAIN, "    chall_score = score(metric, challenger, frame, y, positive)\n",
                   "    chall_score = champ_score + (-0.0004 if higher_is_better(metric) "
                   "else 0.0004)\n")
    mutant.assert_caught("phase6", "retrain-drill", "not decisively below")


def test_retrain_that_always_promotes_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(RETRAIN, DECIDE, "    promote = True\n")
    mutant.assert_caught("phase6", "retrain-drill", "inverted labels was promoted")


def test_retrain_that_never_promotes_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(RETRAIN, DECIDE, "    promote = args.force_promote\n")
    mutant.assert_caught("phase6", "retrain-drill", "real labels was not promoted")


def test_retrain_ignoring_its_data_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # always retrains on the training split, whatever --data says: on wrong labels it
    # reproduces the champion, give or take the fit's noise: kept with a challenger no worse
    # than the champion, or (a hair better) promoted; either way the drill names it
    mutant.replace(RETRAIN, "        data = pd.read_csv(args.data)\n",
                   "        data = pd.read_csv(ROOT / 'data' / 'splits' / 'train.csv')\n")
    got = mutant.assert_caught("phase6", "retrain-drill")
    assert ("not trained on the data" in got["message"]
            or "inverted labels was promoted" in got["message"]), got["message"]


def test_retrain_recording_scores_it_never_measured_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # decides on real scores but writes the phase-3 claim as the challenger's score
    mutant.replace(RETRAIN, '                "champion_score": champ_score, "challenger_score": '
                   'chall_score,\n',
                   '                "champion_score": champ_score, '
                   '"challenger_score": meta["test_score"],\n')
    mutant.assert_caught("phase6", "retrain-drill", "records challenger_score")


def test_retrain_recording_promote_without_promoting_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(RETRAIN, "        if promote:\n            registry.promote(mv)\n",
                   "        if promote:\n            pass  # promotion is recorded below\n")
    mutant.assert_caught("phase6", "retrain-drill", "did not replace the served model")


def test_promotion_that_does_not_move_the_alias_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # the promoted model is exported and served, but the MLflow alias `champion` stays on the
    # old version: the registry no longer says what production runs
    mutant.replace(REGISTRY, "    c.set_registered_model_alias(mv.name, CHAMPION, mv.version)\n", "")
    mutant.assert_caught("phase6", "retrain-drill", "did not move the alias")


def test_rollback_that_only_prints_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.write(ROLLBACK, "import json\n\nprint(json.dumps({'rolled_back_from': 'latest', "
                 "'champion': 'previous'}))\n")
    mutant.assert_caught("phase6", "rollback-drill", "expected the previous version")


def test_rollback_moving_the_alias_but_not_the_served_model_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # the MLflow alias `champion` moves back, but the export the API loads (and the image
    # ships) is left as it was: the registry says one thing, production serves another
    mutant.replace(REGISTRY, "    export(target)\n    return model_version_name(current), "
                   "model_version_name(target)\n",
                   "    return model_version_name(current), model_version_name(target)\n")
    mutant.assert_caught("phase6", "rollback-drill", "expected the previous version")


def test_rollback_restoring_the_served_model_but_not_the_alias_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # the previous model's files are exported again, but the registry's `champion` still names
    # the bad version: the next deploy from the registry would bring it back
    mutant.replace(REGISTRY, "    c.set_registered_model_alias(name, CHAMPION, target.version)\n",
                   "")
    mutant.assert_caught("phase6", "rollback-drill", "did not move the alias back")


def test_canary_whose_degraded_never_fires_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(CANARY, '    if canary["error_rate"] - stable["error_rate"] > max_error_increase:',
                   '    return None\n    if canary["error_rate"] - stable["error_rate"] > '
                   'max_error_increase:')
    mutant.assert_caught("phase6", "canary-drill", "degraded canary")


def test_canary_that_cannot_roll_back_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # issue 9: it decides to roll back, says so and sets the weight to 0, but nothing moves
    mutant.replace(CANARY, "    res = subprocess.run([sys.executable, str(ROOT / \"rollback\" / "
                   "\"rollback.py\")],  # nosec B603\n                         check=False)\n"
                   "    return res.returncode == 0\n",
                   "    print('rolling back')\n    return True\n")
    mutant.assert_caught("phase6", "canary-drill", "rollback")


def test_canary_reading_no_data_as_healthy_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # issue 11's canary: an empty query result reads as 0
    mutant.replace(CANARY, "    if not data:\n        raise NoData(expr)\n",
                   "    if not data:\n        return 0.0\n")
    mutant.replace(CANARY, "    if query(prometheus, total) <= 0:\n"
                   "        raise NoData(f\"no /predict requests on track {track}\")\n", "")
    mutant.assert_caught("phase6", "canary-drill", "no canary series")


def test_canary_that_always_rolls_back_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    mutant.replace(CANARY, "            why = degraded(canary, stable, max_error_increase, "
                   "max_p95_ratio, min_p95_increase_s)\n",
                   "            why = 'held back as a precaution'\n")
    mutant.assert_caught("phase6", "canary-drill", "healthy")


# -- drift decides whether retraining runs (the DAG, run by the gate) --------------------------
DAG = "airflow_dags/continuous_training.py"


def test_dag_that_retrains_whatever_drift_says_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # issue 11: the seed's DAG: the drift job runs, its verdict is swallowed and retraining
    # follows it every week (dag-parses sees a clean check -> retrain -> canary path)
    mutant.replace(DAG, "    drift_decides(check_drift.output) >> training_set >> retrain\n",
                   "    check_drift >> training_set >> retrain\n")
    mutant.assert_caught("phase6", "drift-decides", "retraining ran without drift")


def test_drift_decision_that_always_retrains_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # a short-circuit in the right place that reads the report and lets everything through
    mutant.replace(DAG, '    return status == "drift"\n', "    return True\n")
    mutant.assert_caught("phase6", "drift-decides", "retraining ran without drift")


def test_api_that_logs_no_inputs_is_caught(mutant) -> None:  # type: ignore[no-untyped-def]
    # the drift job has no production data, so drift can never start retraining
    mutant.replace("deployment/api/input_log.py", '"INPUT_LOG_SAMPLE", "0.1"',
                   '"INPUT_LOG_SAMPLE", "0"')
    mutant.assert_caught("phase6", "drift-decides", "drift did not start retraining")
