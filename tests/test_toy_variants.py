"""The Fig. 5 baselines in the toy experiment: each method's run is its entry point's config with
its launch script's flags; the toy's rule judge and oracle traces behave as documented."""
from __future__ import annotations

import json
from pathlib import Path

import pytest

from r1v.config import parse_config
from r1v.judge_reward import JUDGE_USER_TEMPLATE, JudgeReward
from r1v.rewards import accuracy_reward, format_reward
from r1v.toy.protocol import METHODS, load_protocol
from r1v.toy.runs import Services, method_spec, run_argv
from r1v.toy.variants import JUDGE_MODEL, rule_judge_score, serve_rule_judge, write_oracle_traces
from r1v.trainer.luffy import load_traces

ROOT = Path(__file__).resolve().parents[1]
V4 = ROOT / "experiments" / "toy" / "protocol_v4.yaml"
SERVICES = Services(teacher_url="http://127.0.0.1:9/teacher", judge_url="http://127.0.0.1:9/v1",
                    luffy_traces="/data/traces.jsonl")


def _prompt(gold: str, answer: str) -> str:
    return JUDGE_USER_TEMPLATE.format(question="How many squares are red?", gold=gold, answer=answer)


@pytest.mark.parametrize("gold, answer, score", [
    ("B", "B", 1.0), ("B", "B. green", 1.0), ("B", "C", 0.0), ("B", "green", 0.0),
    ("3", "3", 1.0), ("3", "2", 0.7), ("3", "4", 0.7), ("3", "0", 0.0), ("3", "9", 0.0), ("0", "1", 0.0),
    ("2", "two", 0.0),
    ("2", "2.0", 1.0),  # not equal by the numeric rule (a decimal marker on one side), off by 0: full credit
])
def test_rule_judge_scores(gold, answer, score):
    assert rule_judge_score(_prompt(gold, answer)) == score


def test_rule_judge_refuses_what_is_not_a_judge_prompt():
    assert rule_judge_score("What colour is the square?") is None


def test_judge_reward_through_the_rule_judge_endpoint():
    columns = {"problem": ["How many squares are red?"] * 3 + ["Which colour?"],
               "problem_type": ["numerical"] * 3 + ["multiple choice"],
               "options": [[]] * 3 + [["A. red", "B. green"]],
               "solution": ["<answer>3</answer>"] * 3 + ["<answer>B</answer>"]}
    completions = [f"<think>x</think><answer>{a}</answer>" for a in ("3", "2", "7", "B")]
    with serve_rule_judge() as url:
        out = JudgeReward(url, JUDGE_MODEL, max_retries=0)(completions, **columns)
    assert list(out) == [1.0, 0.7, 0.0, 1.0]
    assert out.metrics["rewards/judge_failed"] == (0.0, 1) and out.metrics["judge/requests"] == (4.0, 1)
    assert out.metrics["judge/tokens_in"][0] > 0  # the endpoint reports usage (words)


def test_oracle_traces_load_as_luffy_traces_and_are_right(tmp_path):
    records = [{"problem_id": "toy-1", "solution": "<answer>C</answer>", "problem_type": "multiple choice"},
               {"problem_id": "toy-2", "solution": "<answer>2</answer>", "problem_type": "numerical"}]
    rl = tmp_path / "rl.jsonl"
    rl.write_text("".join(json.dumps(r) + "\n" for r in records))
    path = write_oracle_traces(rl, tmp_path / "traces.jsonl", "<think>Let me look.</think>")
    first = path.read_bytes()
    assert write_oracle_traces(rl, path, "<think>Let me look.</think>").read_bytes() == first  # idempotent
    traces = load_traces(str(path))
    assert list(traces) == ["toy-1", "toy-2"]
    for rec in records:
        (text,) = traces[rec["problem_id"]]
        assert format_reward(text) == 1.0
        assert accuracy_reward(text, rec["solution"], rec["problem_type"]) == 1.0


def _configs(method: str, services: Services = SERVICES):
    protocol = load_protocol(V4)
    argv = run_argv(protocol, Path("/warm"), method, 1, Path("/out"), services)
    return parse_config(method_spec(method).types, argv), protocol


@pytest.mark.parametrize("method", METHODS)
def test_every_method_parses_with_its_entry_points_config(method):
    (script, train, *_), protocol = _configs(method)
    assert train.max_steps == protocol.rl.max_steps and train.seed == 1
    assert train.num_generations == protocol.rl.num_generations
    assert train.learning_rate == protocol.rl.learning_rate
    rewards = {"majority": ["majority_vote", "format"], "judge": ["judge", "format"]}
    assert script.reward_funcs == rewards.get(method, ["accuracy", "format"])
    assert train.beta == (0.0 if method == "luffy" else protocol.rl.beta)  # LUFFY's script: no KL


def test_variants_carry_their_launch_scripts_flags():
    (_, luffy, _), _ = _configs("luffy")
    assert luffy.luffy_traces == "/data/traces.jsonl" and luffy.luffy_num_traces == 1
    (_, replay, _), _ = _configs("replay")
    assert (replay.replay_strategy, replay.replay_k, replay.replay_min_cache, replay.replay_max_cache,
            replay.replay_adv_norm, replay.replay_coef) == ("highest_k", 8, 16, 16, "split", 1.0)
    (_, _, _, judge), _ = _configs("judge")
    assert judge.judge_base_url == "http://127.0.0.1:9/v1" and judge.judge_model == JUDGE_MODEL
    (_, ffr, _), protocol = _configs("ffr")
    assert ffr.ffr_enable and ffr.teacher_url == "http://127.0.0.1:9/teacher"
    assert ffr.ffr_patch_tax == protocol.rl.ffr_patch_tax


@pytest.mark.parametrize("method, flag", [("ffr", "--teacher-url"), ("luffy", "--luffy-traces"),
                                          ("judge", "--judge-url")])
def test_a_method_without_its_service_is_refused_by_name(method, flag):
    with pytest.raises(ValueError, match=flag):
        _configs(method, Services())


def test_a_method_worse_than_grpo_by_more_than_the_spread_is_beyond_it():
    from r1v.toy.report import comparison

    def entry(finals):
        import statistics
        return {"final": {"mean": statistics.fmean(finals), "std": statistics.stdev(finals)},
                "gain": {"mean": statistics.fmean(finals) - 0.35}}

    comp = comparison({"grpo": entry([0.43, 0.42, 0.41]), "majority": entry([0.37, 0.37, 0.37]),
                       "replay": entry([0.41, 0.40, 0.497]), "ffr": entry([0.50, 0.51, 0.49])})
    assert comp["positive_control"]["holds"]  # +7 points
    assert comp["majority_minus_grpo"]["points"] == pytest.approx(-5.0)
    assert comp["majority_minus_grpo"]["beyond_spread"]  # 5 points worse, seed std 1
    assert not comp["replay_minus_grpo"]["beyond_spread"]
    assert comp["ffr_minus_grpo"]["beyond_spread"]


def test_replicate_overrides_seeds_and_methods_within_the_protocol(tmp_path):
    from r1v.toy.replicate import pending_runs, with_overrides

    protocol = with_overrides(load_protocol(V4), seeds=[0, 3], methods=["ffr", "grpo"])
    assert protocol.rl.methods == ("grpo", "ffr") and protocol.rl.seeds == (0, 3)  # the protocol's order
    (tmp_path / "grpo" / "seed0").mkdir(parents=True)
    (tmp_path / "grpo" / "seed0" / "summary.json").write_text("{}")
    assert pending_runs(protocol, tmp_path) == [("ffr", 0), ("grpo", 3), ("ffr", 3)]
    with pytest.raises(ValueError, match="tgrpo"):
        with_overrides(load_protocol(V4), methods=["tgrpo"])  # v4 fixed no settings for it
