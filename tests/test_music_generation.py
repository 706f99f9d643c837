"""Generated music: well-formed by construction, and exported so that it plays right in any player."""

from __future__ import annotations

import itertools

import numpy as np
import pytest
import symusic
import torch

from engine.contract.config import ModelSection, TokenizerSection
from engine.music import syntax as msyntax
from engine.music.chorales import VOICE_PROGRAMS
from engine.music.data import build_tokenizer
from engine.music.export import finish_score
from engine.music.grammar import RemiGrammar, has_empty_bars
from engine.music.sample import generate_batch
from engine.training.model import MusicTransformer

CHORALE_PROGRAMS = sorted(VOICE_PROGRAMS.values())
CHORALE_METRES = [(3, 4), (4, 4)]


def _untrained(tokenizer) -> MusicTransformer:
    torch.manual_seed(0)
    return MusicTransformer(ModelSection(d_model=32, n_layers=1, n_heads=2, dropout=0.0), len(tokenizer), 64).eval()


def _sample(model, tokenizer, seed: int, grammar: RemiGrammar | None) -> list[str]:
    start = torch.tensor([[tokenizer["BOS_None"]]])
    generator = torch.Generator().manual_seed(seed)
    ids = model.generate(start, 150, 1.0, 0, generator=generator, stop_token=tokenizer["EOS_None"], allowed=grammar)
    return [tokenizer[i] for i in ids[0].tolist()]


@pytest.mark.slow
def test_an_untrained_model_writes_only_well_formed_samples_in_the_datas_voices_and_metre():
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    model = _untrained(tokenizer)
    free = [_sample(model, tokenizer, seed, None) for seed in range(4)]
    # Without the grammar an untrained model's samples are malformed: the check below can fail.
    assert not any(msyntax.check_remi_syntax(tokens, 8).valid for tokens in free)
    for seed in range(4):
        tokens = _sample(model, tokenizer, seed, RemiGrammar(tokenizer, 8))
        report = msyntax.check_remi_syntax(tokens, 8)
        assert report.valid, report.first_error
        assert report.n_notes > 0
        programs = {int(t.split("_")[1]) for t in tokens if t.startswith("Program_")}
        assert programs <= set(CHORALE_PROGRAMS)
        assert len({t for t in tokens if t.startswith("TimeSig_")}) == 1


def test_the_vocabulary_holds_the_datas_programs_and_metres_only():
    tokens = set(build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES).vocab)
    assert {t for t in tokens if t.startswith("Program_")} == {f"Program_{p}" for p in CHORALE_PROGRAMS}
    assert {t for t in tokens if t.startswith("TimeSig_")} == {"TimeSig_3/4", "TimeSig_4/4"}
    assert not any(t.startswith("PitchDrum_") for t in tokens)
    pitches = sorted(int(t.split("_")[1]) for t in tokens if t.startswith("Pitch_"))
    assert (pitches[0], pitches[-1]) == (TokenizerSection().pitch_low, TokenizerSection().pitch_high)
    with_drums = set(build_tokenizer(TokenizerSection(), [0, -1], [(4, 4)]).vocab)
    assert "Program_-1" in with_drums and any(t.startswith("PitchDrum_") for t in with_drums)


@pytest.mark.slow
def test_a_drum_program_is_followed_by_drum_pitches_only():
    tokenizer = build_tokenizer(TokenizerSection(), [0, -1], [(4, 4)])
    model = _untrained(tokenizer)
    for seed in range(4):
        tokens = _sample(model, tokenizer, seed, RemiGrammar(tokenizer, 8))
        assert msyntax.check_remi_syntax(tokens, 8).valid
        for program, pitch in itertools.pairwise(tokens):
            if program == "Program_-1":
                assert pitch.startswith("PitchDrum_")
            elif program.startswith("Program_"):
                assert pitch.startswith("Pitch_")


@pytest.mark.slow
def test_a_sample_continues_its_prompts_metre_and_stays_inside_its_bars():
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    prompt = ["BOS_None", "Bar_None", "TimeSig_3/4", "Position_0", "Program_73", "Pitch_67", "Duration_3.0.8"]
    model = _untrained(tokenizer)
    for seed in range(4):
        start = torch.tensor([[tokenizer[t] for t in prompt]])
        ids = model.generate(
            start, 150, 1.0, 0, generator=torch.Generator().manual_seed(seed), allowed=RemiGrammar(tokenizer, 8)
        )
        tokens = [tokenizer[i] for i in ids[0].tolist()]
        assert msyntax.check_remi_syntax(tokens, 8).valid
        assert {t for t in tokens if t.startswith("TimeSig_")} == {"TimeSig_3/4"}
        assert max(int(t.split("_")[1]) for t in tokens if t.startswith("Position_")) < 24


def test_the_exported_midi_has_the_datas_tempo_resolution_metre_and_voice_names(tmp_path):
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    model = _untrained(tokenizer)
    tokens = _sample(model, tokenizer, 0, RemiGrammar(tokenizer, 8))
    body = [tokenizer[t] for t in tokens if t not in ("BOS_None", "EOS_None", "PAD_None")]
    names = {str(program): voice.capitalize() for voice, program in VOICE_PROGRAMS.items()}
    path = tmp_path / "sample.mid"
    finish_score(tokenizer.decode(body), 80.0, names).dump_midi(str(path))

    score = symusic.Score(str(path))
    assert score.ticks_per_quarter == 480
    assert [round(t.qpm, 2) for t in score.tempos] == [80.0]
    metre = next(t for t in tokens if t.startswith("TimeSig_")).split("_")[1]
    assert [f"{ts.numerator}/{ts.denominator}" for ts in score.time_signatures] == [metre]
    assert score.tracks and {t.program for t in score.tracks} <= set(CHORALE_PROGRAMS)
    for track in score.tracks:
        assert track.name == names[str(track.program)]


def test_bars_stay_empty_only_when_the_data_has_empty_bars():
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    ids = [tokenizer[t] for t in ["Bar_None", "TimeSig_4/4", "Position_0", "Program_73", "Pitch_67", "Duration_1.0.8"]]
    full, with_rest = np.array(ids * 3), np.array(ids[:2] + ids)
    assert not has_empty_bars([full], tokenizer) and has_empty_bars([full, with_rest], tokenizer)
    model = _untrained(tokenizer)
    for seed in range(4):
        tokens = _sample(model, tokenizer, seed, RemiGrammar(tokenizer, 8, allow_empty_bars=False))
        assert msyntax.check_remi_syntax(tokens, 8).valid
        bars = [i for i, t in enumerate(tokens) if t == "Bar_None"]
        # Every bar holds a note: after its TimeSig comes a Position.
        assert all(tokens[i + 2].startswith("Position_") for i in bars if i + 2 < len(tokens))


@pytest.mark.slow
def test_a_batch_of_samples_holds_what_each_seed_writes_alone_each_well_formed():
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    model = _untrained(tokenizer)
    seeds = [0, 1, 2, 3, 4, 5]
    options = dict(max_tokens=150, temperature=1.0, top_k=0, stop_token=tokenizer["EOS_None"])
    bos = [tokenizer["BOS_None"]]
    batch = generate_batch(model, [bos] * len(seeds), seeds, **options, grammar=lambda: RemiGrammar(tokenizer, 8))
    alone = [generate_batch(model, [bos], [s], **options, grammar=lambda: RemiGrammar(tokenizer, 8))[0] for s in seeds]
    assert batch == alone
    assert len({tuple(ids) for ids in batch}) == len(seeds)  # each row its own sample, not one repeated
    for ids in batch:
        tokens = [tokenizer[i] for i in ids]
        report = msyntax.check_remi_syntax(tokens, 8)
        assert report.valid, report.first_error
        assert {int(t.split("_")[1]) for t in tokens if t.startswith("Program_")} <= set(CHORALE_PROGRAMS)
        assert len({t for t in tokens if t.startswith("TimeSig_")}) == 1


def test_prompts_of_different_lengths_each_continue_their_own_prompt():
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    model = _untrained(tokenizer)
    three = ["BOS_None", "Bar_None", "TimeSig_3/4", "Position_0", "Program_73", "Pitch_67", "Duration_3.0.8"]
    prompts = [[tokenizer[t] for t in three], [tokenizer["BOS_None"]], [tokenizer[t] for t in three]]
    out = generate_batch(
        model,
        prompts,
        [0, 1, 2],
        max_tokens=100,
        temperature=1.0,
        top_k=0,
        stop_token=tokenizer["EOS_None"],
        grammar=lambda: RemiGrammar(tokenizer, 8),
    )
    for prompt, ids in zip(prompts, out):
        assert ids[: len(prompt)] == prompt
        assert msyntax.check_remi_syntax([tokenizer[i] for i in ids], 8).valid
    assert {tokenizer[i] for i in out[0] if tokenizer[i].startswith("TimeSig_")} == {"TimeSig_3/4"}


def _nucleus_rows(model, tokenizer, top_p: float, seeds: list[int]) -> list[list[int]]:
    bos = [tokenizer["BOS_None"]]
    return generate_batch(
        model,
        [bos] * len(seeds),
        seeds,
        max_tokens=60,  # within the model's 64-token window, so one forward pass sees every prefix
        temperature=1.0,
        top_k=0,
        top_p=top_p,
        stop_token=tokenizer["EOS_None"],
        grammar=lambda: RemiGrammar(tokenizer, 8),
    )


def test_top_p_draws_only_from_the_likeliest_tokens_the_grammar_allows():
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    model = _untrained(tokenizer)
    top_p = 0.5
    for ids in _nucleus_rows(model, tokenizer, top_p, [0, 1, 2]):
        assert msyntax.check_remi_syntax([tokenizer[i] for i in ids], 8).valid
        grammar = RemiGrammar(tokenizer, 8)
        with torch.no_grad():
            logits = model(torch.tensor([ids]))[0]
        for t in range(1, len(ids)):
            allowed = grammar(torch.tensor([ids[:t]]))[0]
            probs = torch.softmax(logits[t - 1].masked_fill(~allowed, float("-inf")), dim=-1)
            # The drawn token is among the fewest likeliest allowed tokens that hold top_p of the mass.
            likelier = probs[probs > probs[ids[t]]].sum()
            assert allowed[ids[t]] and likelier < top_p


def test_a_tiny_top_p_leaves_one_token_so_every_seed_writes_the_same_well_formed_sample():
    tokenizer = build_tokenizer(TokenizerSection(), CHORALE_PROGRAMS, CHORALE_METRES)
    model = _untrained(tokenizer)
    free = _nucleus_rows(model, tokenizer, 1.0, [0, 1, 2])
    assert len({tuple(ids) for ids in free}) == 3  # the seeds differ when nothing is cut: the check below can fail
    narrow = _nucleus_rows(model, tokenizer, 1e-6, [0, 1, 2])
    assert narrow[0] == narrow[1] == narrow[2]
    assert msyntax.check_remi_syntax([tokenizer[i] for i in narrow[0]], 8).valid
