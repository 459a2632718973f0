"""Bad input: each case raises its own exception with a message saying what to do."""

from __future__ import annotations

import numpy as np
import pytest
import torch

import draftkit
from draftkit.errors import (
    BatchSizeError,
    ContractViolationError,
    CorruptDataFileError,
    EmptyPromptError,
    IncompatiblePartsError,
    InvalidInputError,
    PromptTooLongError,
    UnknownPartError,
    UnsupportedModelError,
)
from draftkit.testing.sources import ScriptedSource
from draftkit.types import Draft, TokenTree
from helpers import cached_model


@pytest.fixture
def model():
    return cached_model("llama")


def test_empty_prompt(model):
    with pytest.raises(EmptyPromptError, match="at least one token"):
        draftkit.SpeculativeDecoder(model).generate(torch.zeros((1, 0), dtype=torch.long))
    with pytest.raises(EmptyPromptError):
        draftkit.PlainDecoder(model).generate([[]])


@pytest.mark.parametrize("text", ["def f(x):", ["def f(x):"], [["a", "b"]]])
def test_text_instead_of_token_ids_says_to_tokenize(model, text):
    """It once surfaced as a torch TypeError about numpy.str_."""
    for decoder in (draftkit.SpeculativeDecoder(model), draftkit.PlainDecoder(model)):
        with pytest.raises(InvalidInputError, match="token ids, not text; tokenize it first"):
            decoder.generate(text, max_new_tokens=2)
        with pytest.raises(InvalidInputError, match="token ids, not text"):
            decoder.stream(text, max_new_tokens=2)


@pytest.mark.parametrize("bad", [0, -3, 2.5, True])
def test_max_new_tokens_below_one(model, bad):
    with pytest.raises(InvalidInputError, match="max_new_tokens"):
        draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=bad)


def test_prompt_longer_than_context():
    model = cached_model("gpt2", context=32)
    with pytest.raises(PromptTooLongError, match="context window is 32"):
        draftkit.SpeculativeDecoder(model).generate([list(range(33))], max_new_tokens=4)


def test_batch_size_above_one_in_stream(model):
    # generate() decodes a batch row by row (tests/test_batch.py); stream() yields one sequence's tokens.
    with pytest.raises(BatchSizeError, match="stream\\(\\) decodes one sequence"):
        draftkit.SpeculativeDecoder(model).stream(torch.ones((2, 3), dtype=torch.long))


def test_prompt_ids_outside_vocabulary(model):
    with pytest.raises(InvalidInputError, match="outside the model's vocabulary"):
        draftkit.SpeculativeDecoder(model).generate([[1, 500]])


def test_float_prompt(model):
    with pytest.raises(InvalidInputError, match="integer token ids"):
        draftkit.SpeculativeDecoder(model).generate(torch.ones((1, 3)))


def test_unknown_part_names_list_the_known_ones(model):
    with pytest.raises(UnknownPartError, match="known sources: .*pld"):
        draftkit.SpeculativeDecoder(model, source="no-such-source")
    with pytest.raises(UnknownPartError, match="known tree builders: chain, trie"):
        draftkit.SpeculativeDecoder(model, tree="bush")
    with pytest.raises(UnknownPartError, match="known verifiers: .*greedy"):
        draftkit.SpeculativeDecoder(model, verifier="maybe")
    # The command line's spelling of a composite: the error says how Python spells it.
    with pytest.raises(UnknownPartError, match=r"pass a list: source=\['pld', 'aded'\]"):
        draftkit.SpeculativeDecoder(model, source="pld+aded")


def test_draft_ids_outside_vocabulary_name_the_source(model):
    source = ScriptedSource(lambda req: Draft.chain([1, 4000]), name="bad-ids")
    with pytest.raises(ContractViolationError, match="source 'bad-ids' drafted token id 4000"):
        draftkit.SpeculativeDecoder(model, source=source).generate([[1, 2]], max_new_tokens=5)


def test_tree_builder_breaking_its_contract(model):
    class BackwardsBuilder:
        name = "backwards"

        def build(self, draft, max_nodes, max_depth):
            tree = TokenTree.from_parents([1, 2], [-1, 0])
            # Bypass validation the way a careless builder might.
            return TokenTree(tree.tokens, np.array([1, -1]), tree.depths, tree.ancestors)

    with pytest.raises(ContractViolationError, match="'backwards' returned a malformed tree"):
        draftkit.SpeculativeDecoder(model, tree=BackwardsBuilder()).generate([[1, 2, 1, 2]], max_new_tokens=4)


@pytest.mark.parametrize("damage", ["ancestors", "depths"])
def test_a_tree_whose_mask_does_not_follow_its_parents_is_refused(model, damage):
    """A builder that filled in depths or ancestors by hand (wrongly) once changed the output without a
    word: the attention mask is built from them. Checked on a chain of two where the walk reaches both."""
    class HandMade:
        name = "hand-made"

        def build(self, draft, max_nodes, max_depth):
            tree = TokenTree.from_parents([1, 2], [-1, 0])
            if damage == "ancestors":
                return TokenTree(tree.tokens, tree.parents, tree.depths, np.ones((2, 2), dtype=bool))
            return TokenTree(tree.tokens, tree.parents, np.array([1, 1]), tree.ancestors)

    with pytest.raises(ContractViolationError, match="'hand-made' returned a malformed tree.*depths and ancestors"):
        draftkit.SpeculativeDecoder(model, tree=HandMade()).generate([[1, 2, 1, 2]], max_new_tokens=4)


@pytest.mark.parametrize("where", ["propose", "observe"])
def test_a_source_writing_to_the_shared_context_is_named(model, where):
    class Scribbler(ScriptedSource):
        def propose(self, request):
            if where == "propose":
                request.context[-1] = 0
            return Draft.chain([1, 2])

        def observe(self, feedback):
            if where == "observe":
                feedback.context[0] = 0

    with pytest.raises(ContractViolationError, match=f"source 'scribbler' wrote to a read-only array in {where}"):
        draftkit.SpeculativeDecoder(model, source=Scribbler(None, name="scribbler")).generate(
            [[1, 2, 1, 2]], max_new_tokens=4)


@pytest.mark.parametrize(("script", "match"), [
    (lambda req: None, "source 'bad' \\(a member of 'pld\\+bad'\\) returned NoneType"),
    (lambda req: Draft([np.array([1.5, 2.0])]), "source 'bad' .*drafted a sequence of dtype float64"),
    (lambda req: Draft([np.array([[1, 2]])]), "source 'bad' .*drafted a sequence of shape \\(1, 2\\)"),
])
def test_a_composite_member_is_held_to_the_source_contract(model, script, match):
    """A member's float ids were once truncated silently, and a member returning None failed with an
    AttributeError inside the merge."""
    bad = ScriptedSource(script, name="bad")
    with pytest.raises(ContractViolationError, match=match):
        draftkit.SpeculativeDecoder(model, source=["pld", bad]).generate([[1, 2, 1, 2]], max_new_tokens=4)


@pytest.mark.parametrize(("options", "match"), [
    ({"decay": -1}, "decay must be in \\[0, 1\\)"),
    ({"decay": 1.0}, "decay must be in"),
    ({"decay": 2.0}, "decay must be in"),
    ({"max_depth": 0}, "max_depth must be an integer >= 1"),
])
def test_composite_options_are_checked(options, match):
    from draftkit.sources.composite import Composite
    from draftkit.sources.pld import PromptLookup

    with pytest.raises(InvalidInputError, match=match):
        Composite([PromptLookup()], **options)


@pytest.mark.parametrize("member", [["aded"], 3, None])
def test_a_source_list_member_that_is_no_source_is_named(model, member):
    """A nested list or a number once surfaced as an AttributeError about capabilities."""
    with pytest.raises(ContractViolationError, match=r"Composite member 1, .* is not a draft source"):
        draftkit.SpeculativeDecoder(model, source=["pld", member], budget=8)


def test_a_composite_given_names_says_where_names_go():
    from draftkit.sources.composite import Composite

    with pytest.raises(IncompatiblePartsError, match="Composite takes source objects.*SpeculativeDecoder\\(source="):
        Composite(["pld", "aded"])


def test_a_verifier_returning_something_else_than_a_verdict_is_named(model):
    from draftkit.verify.greedy import GreedyVerifier

    class Tuple(GreedyVerifier):
        name = "tuple"

        def verify(self, *args, **kwargs):
            verdict = super().verify(*args, **kwargs)
            return verdict.accepted_nodes, verdict.bonus_token

    with pytest.raises(ContractViolationError, match="verifier 'tuple' returned tuple, expected a draftkit.Verdict"):
        draftkit.SpeculativeDecoder(model, verifier=Tuple()).generate([[1, 2, 1, 2]], max_new_tokens=4)


def test_a_source_without_capabilities_is_named(model):
    class NoCapabilities:
        name = "bare"

        def propose(self, request):
            return Draft.empty()

        def observe(self, feedback):
            pass

        def begin(self, prompt):
            pass

        def reset(self):
            pass

    with pytest.raises(ContractViolationError, match="has no capabilities"):
        draftkit.SpeculativeDecoder(model, source=NoCapabilities())


def test_budget_and_max_depth_take_integers_of_any_kind_but_not_bools(model):
    decoder = draftkit.SpeculativeDecoder(model, budget=np.int64(8), max_depth=np.int32(3))
    assert decoder.budget == 8 and decoder.max_depth == 3
    for options in ({"budget": True}, {"max_depth": True}, {"max_depth": 2.5}, {"max_depth": "3"}):
        with pytest.raises(InvalidInputError, match="budget|max_depth"):
            draftkit.SpeculativeDecoder(model, **options)


def test_tree_builder_over_budget(model):
    class Greedy:
        name = "greedy-builder"

        def build(self, draft, max_nodes, max_depth):
            return TokenTree.from_parents([1] * (max_nodes + 1), [-1] + list(range(max_nodes)))

    with pytest.raises(ContractViolationError, match="over the budget"):
        draftkit.SpeculativeDecoder(model, tree=Greedy(), budget=3).generate([[1, 2, 1, 2]], max_new_tokens=20)


def test_source_without_methods_is_refused(model):
    class NotASource:
        name = "nope"

    with pytest.raises(ContractViolationError, match="lacks propose"):
        draftkit.SpeculativeDecoder(model, source=NotASource())


def test_greedy_verifier_refuses_sampling(model):
    decoder = draftkit.SpeculativeDecoder(model, verifier="greedy")
    with pytest.raises(IncompatiblePartsError, match="verifier=None"):
        decoder.generate([[1, 2]], max_new_tokens=3, do_sample=True, seed=1)


def test_stop_strings_need_a_tokenizer(model):
    with pytest.raises(InvalidInputError, match="tokenizer"):
        draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=3, stop_strings=["x"])


def test_something_else_than_a_tokenizer_is_named_before_a_step_runs(model):
    """It once surfaced mid-request as an AttributeError about decode."""
    for make in (draftkit.SpeculativeDecoder, draftkit.PlainDecoder):
        with pytest.raises(InvalidInputError, match=r"tokenizer given to the decoder must be a tokenizer object .* "
                           r"got str 'gpt2'; load one with AutoTokenizer.from_pretrained\('gpt2'\)"):
            make(model, tokenizer="gpt2")
        decoder = make(model)
        with pytest.raises(InvalidInputError, match="tokenizer for stop_strings must be a tokenizer object .* got int 123"):
            decoder.generate([[1, 2]], max_new_tokens=3, stop_strings=["x"], tokenizer=123)
        assert decoder.generate([[1, 2]], max_new_tokens=3).sequences.shape == (1, 5)  # nothing left behind


@pytest.mark.parametrize("stops", [[5], 5, ["x", None], b"ab", {"x": 1}])
def test_stop_strings_that_are_not_strings_are_refused(model, stops):
    from transformers import AutoTokenizer

    from draftkit.demo import demo_model_path

    tokenizer = AutoTokenizer.from_pretrained(demo_model_path())
    with pytest.raises(InvalidInputError, match="stop_strings must be a string or a list of strings.*eos_token_id"):
        draftkit.PlainDecoder(model).generate([[1, 2]], max_new_tokens=3, stop_strings=stops, tokenizer=tokenizer)


@pytest.mark.parametrize("kwargs, match", [
    ({"temperature": 0.0}, "temperature"),
    ({"temperature": "hot"}, "temperature must be a number"),
    ({"top_p": 1.5}, "top_p"),
    ({"top_k": -1}, "top_k"),
    ({"top_k": 5.0}, "top_k must be an integer"),
    ({"top_k": True}, "top_k must be an integer"),
    ({"seed": "abc"}, "seed must be an integer"),
])
def test_bad_sampling_parameters(model, kwargs, match):
    with pytest.raises(InvalidInputError, match=match):
        draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=3, do_sample=True, **kwargs)
    if "seed" in kwargs:  # a batch checks it too, before adding each row's index
        with pytest.raises(InvalidInputError, match=match):
            draftkit.SpeculativeDecoder(model).generate([[1, 2], [3, 4]], max_new_tokens=3, do_sample=True,
                                                        pad_token_id=0, **kwargs)


@pytest.mark.parametrize("options", [{"eos_token_id": "a"}, {"eos_token_id": [1, 2.5]}, {"stop_token_ids": ["x"]}])
def test_token_ids_that_are_not_integers_are_refused_by_name(model, options):
    (name,) = options
    with pytest.raises(InvalidInputError, match=f"{name} must be a token id or a list of token ids"):
        draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=3, **options)


def test_greedy_decoding_ignores_sampling_settings_as_hf_does(model):
    """A checkpoint whose generation config says temperature=0 (common for greedy models) was refused;
    model.generate ignores every sampling setting when it does not sample, and so does draftkit."""
    import copy

    tuned = copy.deepcopy(model)
    tuned.generation_config.temperature = 0.0
    tuned.generation_config.do_sample = False
    prompt = torch.tensor([[5, 6, 7, 5, 6]])
    expected = tuned.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None)
    for options in ({}, {"do_sample": False}, {"temperature": 0.0, "top_p": 5.0, "top_k": 0}):
        for decoder in (draftkit.PlainDecoder(tuned), draftkit.SpeculativeDecoder(tuned, source="pld")):
            out = decoder.generate(prompt, max_new_tokens=6, eos_token_id=None, **options)
            assert out.sequences.tolist() == expected.tolist(), options


def test_encoder_decoder_model_is_refused():
    from transformers import T5Config, T5ForConditionalGeneration

    cfg = T5Config(vocab_size=50, d_model=16, d_kv=4, d_ff=32, num_layers=1, num_heads=2)
    with pytest.raises(UnsupportedModelError, match="encoder-decoder"):
        draftkit.SpeculativeDecoder(T5ForConditionalGeneration(cfg))


def test_model_without_lm_head_is_refused():
    from transformers import LlamaConfig, LlamaModel

    cfg = LlamaConfig(vocab_size=50, hidden_size=16, intermediate_size=32, num_hidden_layers=1,
                      num_attention_heads=2, num_key_value_heads=1)
    with pytest.raises(UnsupportedModelError, match="AutoModelForCausalLM"):
        draftkit.SpeculativeDecoder(LlamaModel(cfg))


def test_not_a_model_is_refused():
    with pytest.raises(UnsupportedModelError, match="not a Hugging Face model"):
        draftkit.SpeculativeDecoder(torch.nn.Linear(3, 3))


def test_recurrent_model_is_refused():
    """Mamba's state cannot be cut back to a tree path: refused at construction."""
    from transformers import MambaConfig, MambaForCausalLM

    cfg = MambaConfig(vocab_size=50, hidden_size=16, state_size=4, num_hidden_layers=1, expand=2)
    with pytest.raises(UnsupportedModelError, match="MambaForCausalLM"):
        draftkit.SpeculativeDecoder(MambaForCausalLM(cfg))


def test_unsupported_hf_options_are_refused_by_name(model):
    from draftkit.errors import UnsupportedSamplingError

    with pytest.raises(UnsupportedSamplingError, match="num_beams=4 is not supported"):
        draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=3, num_beams=4)
    with pytest.raises(UnsupportedSamplingError, match="guidance_scale"):
        draftkit.PlainDecoder(model).generate([[1, 2]], max_new_tokens=3, guidance_scale=2.0)
    # Values that change nothing (a single beam, one sequence) are accepted, as model.generate does.
    draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=3, num_beams=1, num_return_sequences=1)
    with pytest.raises(TypeError, match="unexpected keyword argument.*temprature"):
        draftkit.SpeculativeDecoder(model).generate([[1, 2]], max_new_tokens=3, temprature=0.5)


def test_a_model_in_training_mode_with_dropout_is_told_to_call_eval():
    """A model fresh from from_config is in training mode; with dropout on, the tree probes once
    refused it as a model whose attention 'does not follow a 4-D mask'."""
    from transformers import LlamaConfig, LlamaForCausalLM

    config = LlamaConfig(vocab_size=97, hidden_size=32, intermediate_size=64, num_hidden_layers=2,
                         num_attention_heads=4, num_key_value_heads=2, attention_dropout=0.3)
    torch.manual_seed(0)
    model = LlamaForCausalLM(config).to(torch.float64)
    assert model.training
    with pytest.raises(InvalidInputError, match="training mode with dropout on \\(attention_dropout=0.3\\).*model.eval"):
        draftkit.SpeculativeDecoder(model, source="pld")
    decoder = draftkit.SpeculativeDecoder(model.eval(), source="pld")
    prompt = torch.tensor([[5, 6, 7, 5, 6]])
    expected = model.generate(prompt, max_new_tokens=6, do_sample=False, eos_token_id=None)
    assert decoder.generate(prompt, max_new_tokens=6, eos_token_id=None).sequences.tolist() == expected.tolist()
    model.train()  # back to training after the decoder was built: refused per request too
    with pytest.raises(InvalidInputError, match="model.eval"):
        decoder.generate(prompt, max_new_tokens=6)
    model.eval()


def test_training_mode_without_dropout_is_accepted(model):
    model.train()
    try:
        out = draftkit.SpeculativeDecoder(model, source="pld").generate([[5, 6, 7, 5, 6]], max_new_tokens=4)
        assert out.sequences.shape[1] == 9
    finally:
        model.eval()


def test_dropout_settings_a_causal_lm_does_not_use_are_not_dropout():
    """GPT-2's summary_first_dropout belongs to another head: a GPT-2 in training mode with its own
    dropouts at 0 decodes deterministically and was once refused for it."""
    from transformers import GPT2Config, GPT2LMHeadModel

    config = GPT2Config(vocab_size=97, n_embd=32, n_layer=2, n_head=2, n_positions=64, resid_pdrop=0.0,
                        embd_pdrop=0.0, attn_pdrop=0.0, summary_first_dropout=0.1)
    torch.manual_seed(0)
    model = GPT2LMHeadModel(config).to(torch.float64)
    assert model.training
    prompt = torch.tensor([[5, 6, 7, 5, 6]])
    expected = model.generate(prompt, max_new_tokens=4, do_sample=False, eos_token_id=None, pad_token_id=0)
    out = draftkit.SpeculativeDecoder(model, source="pld").generate(prompt, max_new_tokens=4, eos_token_id=None)
    assert out.sequences.tolist() == expected.tolist()


@pytest.mark.parametrize(("source", "options"), [
    ("aded", {"persist": "no"}),
    ("aded", {"learn_prompt": 0}),
    ("rest", {"include_context": "yes"}),
    ("layerskip", {"adaptive": "off"}),
])
def test_source_switches_must_be_booleans(source, options):
    """A string such as "no" is truthy: Aded(persist="no") once kept what it learnt."""
    from draftkit.sources.aded import Aded
    from draftkit.sources.layerskip import LayerSkip
    from draftkit.sources.rest import Rest

    make = {"aded": Aded, "rest": lambda **o: Rest(None, **o), "layerskip": LayerSkip}[source]
    (name,) = options
    with pytest.raises(InvalidInputError, match=f"{source}: {name} must be true or false"):
        make(**options)


class _Raising:
    """A source that raises ``error`` in ``method`` and drafts nothing otherwise."""

    name = "raising"

    def __init__(self, method, error):
        from draftkit.types import SourceCapabilities

        self.capabilities = SourceCapabilities()
        self.method, self.error = method, error

    def _maybe(self, method):
        if method == self.method:
            raise self.error

    def begin(self, prompt):
        self._maybe("begin")

    def propose(self, request):
        self._maybe("propose")
        return Draft.chain([int(request.context[-1])] * 2)

    def observe(self, feedback):
        self._maybe("observe")

    def reset(self):
        pass


@pytest.mark.parametrize("method", ["begin", "propose", "observe"])
@pytest.mark.parametrize("composite", [False, True])
def test_an_exception_of_a_source_becomes_a_source_error_naming_it(model, method, composite):
    """StopIteration too: a contextlib guard once handed it back, and the decoder's generator turned it
    into a bare 'generator raised StopIteration'."""
    from draftkit import SourceError

    for error in (StopIteration(), np.linalg.LinAlgError("singular"), ZeroDivisionError("x")):
        source = _Raising(method, error)
        decoder = draftkit.SpeculativeDecoder(model, source=["pld", source] if composite else source, budget=8)
        member = r" \(a member of 'pld\+raising'\)" if composite else ""
        with pytest.raises(SourceError, match=rf"source 'raising'{member} failed in {method}\(\): "
                           rf"{type(error).__name__}.*\(raised at .*test_errors.py:\d+\); it is most likely a bug"):
            decoder.generate([[1, 2, 3, 1, 2, 3]], max_new_tokens=6)


@pytest.mark.parametrize("error", [MemoryError(), CorruptDataFileError("store damaged"), KeyboardInterrupt()])
def test_draftkit_errors_running_out_of_memory_and_interrupts_pass_through_unchanged(model, error):
    decoder = draftkit.SpeculativeDecoder(model, source=_Raising("propose", error), budget=8)
    with pytest.raises(type(error)) as caught:
        decoder.generate([[1, 2, 3, 1, 2, 3]], max_new_tokens=6)
    assert caught.value is error
