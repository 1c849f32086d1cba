"""Write the models that test_legacy.py loads: fitted estimators pickled by skllm 0.1.

Run from the repository root with the *old* version of the package importable:

    git worktree add /tmp/skllm-0.1 <commit> && PYTHONPATH=/tmp/skllm-0.1 python tests/legacy/make_legacy_models.py

The tiny backbones are saved next to the pickles and named by a relative path,
so that the pickles load from the repository root on any machine.
"""

import json
import string
import sys
from pathlib import Path

import joblib
import numpy as np
import torch

import skllm

HERE = Path("tests/legacy")
WORDS = "the a an and or but not no is was film movie great good bad awful dull boring fun loved hated it".split()
X = [f"{t} {i}" for i in range(3) for t in ["great film", "loved it", "good fun", "awful film", "hated it", "dull"]]
y = ["pos" if any(w in t for w in ("great", "loved", "good")) else "neg" for t in X]
QUERIES = ["great fun", "awful and dull", "loved the film", "boring"]


def tiny_bert(folder):
    from transformers import BertConfig, BertModel, BertTokenizer

    specials = ["[PAD]", "[UNK]", "[CLS]", "[SEP]", "[MASK]"]
    chars = list(string.ascii_lowercase + string.digits)
    vocab = {t: i for i, t in enumerate(dict.fromkeys(specials + chars + ["##" + c for c in chars] + WORDS))}
    tokenizer = BertTokenizer(vocab=vocab, do_lower_case=True)
    config = BertConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        num_hidden_layers=1,
        num_attention_heads=2,
        intermediate_size=20,
        max_position_embeddings=64,
    )
    torch.manual_seed(0)
    BertModel(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def tiny_llama(folder):
    from tokenizers import Tokenizer, decoders, models, pre_tokenizers, trainers
    from transformers import LlamaConfig, LlamaForCausalLM, PreTrainedTokenizerFast

    bpe = Tokenizer(models.BPE(unk_token=None))
    bpe.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False)
    bpe.decoder = decoders.ByteLevel()
    trainer = trainers.BpeTrainer(
        vocab_size=300, special_tokens=["<s>", "</s>", "<pad>"], initial_alphabet=pre_tokenizers.ByteLevel.alphabet()
    )
    bpe.train_from_iterator([" ".join(WORDS)] * 20, trainer=trainer)
    tokenizer = PreTrainedTokenizerFast(tokenizer_object=bpe, bos_token="<s>", eos_token="</s>", pad_token="<pad>")
    config = LlamaConfig(
        vocab_size=len(tokenizer),
        hidden_size=16,
        intermediate_size=20,
        num_hidden_layers=1,
        num_attention_heads=2,
        num_key_value_heads=2,
        max_position_embeddings=256,
        bos_token_id=tokenizer.bos_token_id,
        eos_token_id=tokenizer.eos_token_id,
        pad_token_id=tokenizer.pad_token_id,
    )
    torch.manual_seed(0)
    LlamaForCausalLM(config).save_pretrained(folder)
    tokenizer.save_pretrained(folder)


def main():
    bert, llama = str(HERE / "tiny-bert"), str(HERE / "tiny-llama")
    tiny_bert(bert)
    tiny_llama(llama)
    common = {"epochs": 2, "batch_size": 4, "random_state": 0, "cache_dir": None}
    models = {
        "embedder": skllm.TransformerEmbedder(bert, cache_dir=None).fit(),
        "finetune_lora": skllm.FineTuneClassifier(bert, method=skllm.LoRA(r=2), **common).fit(X, y),
        "finetune_head": skllm.FineTuneRegressor(bert, method="head", **common).fit(X, np.arange(len(X), dtype=float)),
        "finetune_prefix_llama": skllm.FineTuneClassifier(llama, method="prefix", **common).fit(X, y),
        "zero_shot": skllm.ZeroShotClassifier(llama).fit(None, ["pos", "neg"]),
        "few_shot": skllm.FewShotClassifier(llama, n_examples=2, random_state=0).fit(X, y),
        "generator": skllm.FewShotGenerator(llama, n_examples=1, max_new_tokens=2, random_state=0).fit(X, y),
    }
    expected = {}
    for name, model in models.items():
        joblib.dump(model, HERE / f"{name}.joblib")
        if name == "embedder":
            out = model.transform(QUERIES)
        elif hasattr(model, "predict_proba"):
            out = model.predict_proba(QUERIES)
        else:
            out = model.predict(QUERIES)
        expected[name] = np.asarray(out).tolist()
    (HERE / "expected.json").write_text(json.dumps({"skllm": skllm.__version__, "queries": QUERIES, **expected}))
    print("wrote", sorted(models), "with skllm", skllm.__version__, "from", skllm.__file__, file=sys.stderr)


if __name__ == "__main__":
    main()
