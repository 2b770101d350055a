"""RePO's replay buffer: a FIFO of past rollouts per prompt and the five ways to read it.

Facts of RePO's released code (Li et al., 2025, ``src/replay_grpo_trainer.py``: ``_replay_step``,
``_update_cache``) that this module follows:

* one ``deque(maxlen=max_cache_size)`` per prompt; a push beyond the size drops the oldest entry;
* an entry keeps the completion tokens, the behaviour log-probs (log-probs of the policy that
  sampled it, computed right after generation) and the per-function rewards it was scored with:
  replayed rewards are the stored ones, never recomputed;
* retrieval for a prompt happens only once its deque holds ``min_cache_to_replay`` entries, takes
  k = len(deque) for ``all`` and k = min(len(deque), num_replays) otherwise, and runs before the
  step's fresh rollouts are pushed (a step never replays its own samples);
* strategies: ``all`` (every entry, oldest first); ``random_k`` (k distinct entries at random);
  ``highest_k`` (the k highest rewards, a stable sort, so ties keep the older entry first);
  ``recent_k`` (the k newest, oldest of them first); ``max_variance_k`` (the k-subset whose
  rewards have the largest population variance, ties to the larger reward sum).

Where this module differs, and why:

* RePO searches every k-subset for ``max_variance_k`` (``itertools.combinations``, C(16, 8) =
  12870 subsets at its script's sizes, intractable for larger buffers). A subset of k reals with
  the largest variance is always made of some j smallest and k - j largest values, so
  :func:`select_entries` scans those k + 1 candidates: the same variance and sum as RePO's
  choice (tests check it against the exhaustive search), entries picked by a stable sort.
* ``random_k`` draws from a generator seeded by (seed, prompt key, pushes so far) instead of
  Python's global RNG, so a resumed run draws what the uninterrupted run would have drawn.
* the ranking reward of ``highest_k`` / ``max_variance_k`` is the trainer's scalar reward
  (weighted sum of the functions); RePO sums the functions unweighted - the same for unit weights.
"""
from __future__ import annotations

import zlib
from collections import deque
from dataclasses import dataclass
from typing import Any, Iterable

import torch

STRATEGIES = ("all", "random_k", "highest_k", "recent_k", "max_variance_k")


@dataclass
class ReplayEntry:
    """One stored rollout of a prompt.

    completion_ids: (L,) long, the completion up to and including its first EOS (L >= 1).
    behaviour_logps: (L,) float32, log-probs of those tokens under the policy that sampled them.
    rewards: (F,) float32, the per-function rewards it was scored with.
    reward: the scalar reward (weighted sum) used to rank entries.
    text: the decoded completion.
    """

    completion_ids: torch.Tensor
    behaviour_logps: torch.Tensor
    rewards: torch.Tensor
    reward: float
    text: str

    def __post_init__(self) -> None:
        if self.completion_ids.dim() != 1 or self.behaviour_logps.shape != self.completion_ids.shape:
            raise ValueError(f"completion_ids and behaviour_logps must be 1-D of one length, got "
                             f"{tuple(self.completion_ids.shape)} and {tuple(self.behaviour_logps.shape)}")

    def to_state(self) -> dict[str, Any]:
        return {"completion_ids": self.completion_ids, "behaviour_logps": self.behaviour_logps,
                "rewards": self.rewards, "reward": self.reward, "text": self.text}


def _population_var(values: list[float]) -> float:
    mean = sum(values) / len(values)
    return sum((v - mean) ** 2 for v in values) / len(values)


def select_entries(entries: list[ReplayEntry], strategy: str, k: int, generator: torch.Generator | None = None
                   ) -> list[ReplayEntry]:
    """The entries ``strategy`` retrieves from one prompt's FIFO (``entries`` oldest first).

    ``k`` is ignored by ``all``; otherwise 1 <= k <= len(entries). ``random_k`` needs ``generator``.
    Returns a new list; order: ``all`` / ``recent_k`` oldest first, ``highest_k`` by reward
    descending, ``random_k`` in draw order, ``max_variance_k`` low rewards then high ones.
    """
    if strategy not in STRATEGIES:
        raise ValueError(f"unknown replay strategy {strategy!r} (expected one of {STRATEGIES})")
    if strategy == "all":
        return list(entries)
    if not 1 <= k <= len(entries):
        raise ValueError(f"cannot retrieve {k} of {len(entries)} entries")
    if strategy == "recent_k":
        return list(entries)[-k:]
    if strategy == "random_k":
        if generator is None:
            raise ValueError("random_k needs a generator")
        return [entries[i] for i in torch.randperm(len(entries), generator=generator)[:k].tolist()]
    # Python's sort is stable: equal rewards keep the older entry first.
    by_reward_desc = sorted(entries, key=lambda e: e.reward, reverse=True)
    if strategy == "highest_k":
        return by_reward_desc[:k]
    ascending = sorted(entries, key=lambda e: e.reward)
    best, best_key = None, None
    for low in range(k + 1):  # `low` smallest rewards plus k - low largest, never the same entry twice
        chosen_low = ascending[:low]
        taken = {id(e) for e in chosen_low}
        chosen_high = [e for e in by_reward_desc if id(e) not in taken][:k - low]
        subset = chosen_low + chosen_high
        rewards = [e.reward for e in subset]
        key = (_population_var(rewards), sum(rewards))
        if best_key is None or key > best_key:
            best, best_key = subset, key
    return best


class ReplayBuffer:
    """Per-prompt FIFO of :class:`ReplayEntry`, at most ``max_size`` entries per prompt.

    Keys are strings chosen by the caller (one per distinct prompt). ``pushed[key]`` counts every
    entry ever pushed for the key (the seed of ``random_k``). :meth:`state_dict` /
    :meth:`load_state_dict` round-trip the buffer exactly (a checkpoint holds it).
    """

    def __init__(self, max_size: int, min_to_replay: int, strategy: str, num_replays: int, seed: int = 0):
        if strategy not in STRATEGIES:
            raise ValueError(f"unknown replay strategy {strategy!r} (expected one of {STRATEGIES})")
        if not 1 <= min_to_replay <= max_size:
            raise ValueError(f"need 1 <= min_to_replay <= max_size, got {min_to_replay} and {max_size}")
        if num_replays < 1:
            raise ValueError(f"num_replays must be >= 1, got {num_replays}")
        self.max_size, self.min_to_replay = max_size, min_to_replay
        self.strategy, self.num_replays, self.seed = strategy, num_replays, seed
        self.fifos: dict[str, deque[ReplayEntry]] = {}
        self.pushed: dict[str, int] = {}

    def __len__(self) -> int:
        return sum(len(q) for q in self.fifos.values())

    def push(self, key: str, entry: ReplayEntry) -> None:
        """Append ``entry`` to the key's FIFO (the oldest one drops out beyond ``max_size``)."""
        self.fifos.setdefault(key, deque(maxlen=self.max_size)).append(entry)
        self.pushed[key] = self.pushed.get(key, 0) + 1

    def push_all(self, items: Iterable[tuple[str, ReplayEntry]]) -> None:
        for key, entry in items:
            self.push(key, entry)

    def retrieve(self, key: str) -> list[ReplayEntry]:
        """What the strategy replays for ``key`` now: [] while its FIFO holds fewer than
        ``min_to_replay`` entries, else k = len for ``all``, min(len, num_replays) otherwise."""
        fifo = self.fifos.get(key)
        if fifo is None or len(fifo) < self.min_to_replay:
            return []
        entries = list(fifo)
        k = len(entries) if self.strategy == "all" else min(len(entries), self.num_replays)
        generator = None
        if self.strategy == "random_k":
            seed = zlib.crc32(f"{self.seed}\0{key}\0{self.pushed[key]}".encode())
            generator = torch.Generator().manual_seed(seed)
        return select_entries(entries, self.strategy, k, generator)

    def state_dict(self) -> dict[str, Any]:
        """Plain containers of tensors, numbers and strings (loadable with ``weights_only=True``)."""
        return {"max_size": self.max_size, "pushed": dict(self.pushed),
                "fifos": {key: [e.to_state() for e in fifo] for key, fifo in self.fifos.items()}}

    def load_state_dict(self, state: dict[str, Any]) -> None:
        """Replace the contents by ``state``; the stored FIFO size must equal this buffer's."""
        if state["max_size"] != self.max_size:
            raise ValueError(f"checkpoint buffer holds FIFOs of {state['max_size']} entries, this run "
                             f"asks for {self.max_size} (replay_max_cache)")
        self.fifos = {key: deque((ReplayEntry(**e) for e in entries), maxlen=self.max_size)
                      for key, entries in state["fifos"].items()}
        self.pushed = {key: int(n) for key, n in state["pushed"].items()}

    def digest(self) -> str:
        """A short fingerprint of the whole contents (keys, order, tokens, log-probs, rewards): two
        buffers with one digest hold the same entries in the same order."""
        crc = 0
        for key in sorted(self.fifos):
            crc = zlib.crc32(key.encode(), crc)
            crc = zlib.crc32(str(self.pushed[key]).encode(), crc)
            for e in self.fifos[key]:
                for t in (e.completion_ids, e.behaviour_logps, e.rewards):
                    crc = zlib.crc32(t.contiguous().numpy().tobytes(), crc)
                crc = zlib.crc32(f"{e.reward!r}{e.text}".encode(), crc)
        return f"{crc:08x}:{len(self)}"
