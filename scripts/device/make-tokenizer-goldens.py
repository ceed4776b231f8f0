#!/usr/bin/env python3
"""Reference data for nanovllm's tokenizer, from Hugging Face `tokenizers` (the Rust library).

Subcommands:
  bench-corpus OUT.jsonl        (here, no tokenizers needed) builds the >= 10 MB benchmark corpus
                                from text this machine has: Debian docs, Python and C sources, and
                                the golden corpus mixed into longer multilingual documents.
  train-gpt2 CORPUS.jsonl DIR   (GPU machine) trains the small GPT-2-style byte-level BPE
                                tokenizer.json that the tests use for the GPT-2 family.
  goldens DIR... --out OUT      (GPU machine) writes OUT/corpus.jsonl (the test strings, shared
                                by all tokenizers) and OUT/<name>.jsonl per tokenizer folder.
  make-variants VARIANTS.json NAME=DIR... --out OUT
                                writes OUT/<variant>/tokenizer.json for each variant of
                                tests/fixtures/tokenizers/variants.json: its base tokenizer.json
                                (found in the NAME=DIR folders) with top-level fields replaced.
  bench CORPUS.jsonl DIR...     (GPU machine) times HF encode, single-threaded and encode_batch
                                over all threads; prints JSON lines and writes per-document id
                                hashes (FNV-1a 64 over the ids) so our bench can be checked.

Golden line format (OUT/<name>.jsonl): line 1 is a header {"tokenizer", "tokenizers", "strings",
"random_sequences"}; then one object per corpus string, in corpus order:
  "ids"       encode(text, add_special_tokens=False)
  "ids_sp"    encode(text, add_special_tokens=True), omitted when equal to "ids"
  "dec"       decode(ids), omitted when equal to the text (a clean round trip)
  "dec_sp"    decode(ids_sp, skip_special_tokens=False), omitted when equal to "dec"
  "dec_skip"  decode(ids_sp, skip_special_tokens=True), omitted when equal to "dec"
then objects {"rand": [ids...], "dec": ..., "dec_skip": ...} for random id sequences (random ids
and runs of byte tokens, to pin down the decoders' handling of broken UTF-8 and specials).
A line {"error": "..."} stands where HF itself failed (raised or panicked) on that input.
"""
import argparse
import gzip
import hashlib
import json
import os
import random
import sys
import time
import unicodedata

# ---------------------------------------------------------------------------------------------
# The golden corpus: deterministic, varied strings.

LANGUAGES = [
    "The quick brown fox jumps over the lazy dog.",
    "Hello, world! How are you doing today? I'm fine, thanks.",
    "Der schnelle braune Fuchs springt über den faulen Hund. Größe, Straße, Äpfel.",
    "Le cœur déçu mais l'âme plutôt naïve, Louÿs rêva de crapaüter en canoë.",
    "¿Dónde está la biblioteca? El niño comió piña y jalapeños.",
    "Português: ação, coração, não, pão, João está à espera.",
    "Съешь же ещё этих мягких французских булок, да выпей чаю.",
    "Ξεσκεπάζω την ψυχοφθόρα βδελυγμία. Γειά σου κόσμε!",
    "أبجد هوز حطي كلمن سعفص قرشت ثخذ ضظغ. مرحبا بالعالم",
    "שלום עולם! דג סקרן שט בים מאוכזב ולפתע מצא חברה.",
    "नमस्ते दुनिया। ऋषियों को सताने वाले दुष्ट राक्षसों के राजा रावण का सर्वनाश करने वाले विष्णुवतार भगवान श्रीराम।",
    "আমি বাংলায় গান গাই। ঝাঁপিয়ে পড়ো শত্রুর উপর।",
    "เป็นมนุษย์สุดประเสริฐเลิศคุณค่า กว่าบรรดาฝูงสัตว์เดรัจฉาน",
    "我能吞下玻璃而不伤身体。你好，世界！中华人民共和国成立于1949年。",
    "いろはにほへと ちりぬるを わかよたれそ つねならむ。東京は日本の首都です。カタカナ、ｶﾀｶﾅ。",
    "다람쥐 헌 쳇바퀴에 타고파. 안녕하세요, 세계!",
    "Tiếng Việt: Không có gì quý hơn độc lập, tự do. Người, được, ở đâu?",
    "Pijamalı hasta yağız şoföre çabucak güvendi. İstanbul, ıspanak.",
    "Zażółć gęślą jaźń. Pchnąć w tę łódź jeża lub ośm skrzyń fig.",
    "ქართული ენა მსოფლიოს უძველესი ენაა.",
    "Բարեւ աշխարհ։ Հայերեն այբուբեն։",
    "ሰላም ለዓለም። ኢትዮጵያ",
    "தமிழ் ஒரு செம்மொழி. வணக்கம் உலகம்!",
    "Habari ya dunia? Ninafurahi kukutana nawe.",
    "Ĉu vi parolas Esperanton? Eĥoŝanĝo ĉiuĵaŭde.",
    "Íslenska: Þú ert ekki einn. Ærið, ðæmi, Ölfus.",
    "Čeština: Příliš žluťoučký kůň úpěl ďábelské ódy.",
    "Română: Înțeleg că ți-ai luat șapte școli.",
    "Українська: Чуєш їх, доцю, га? Кумедна ж ти, прощайся без ґольфів!",
    "Монгол: Сайн байна уу? ᠮᠣᠩᠭᠣᠯ ᠪᠢᠴᠢᠭ᠌",
    "ᐊᐃᓐᖓᐃ! ᏣᎳᎩ ᎦᏬᏂᎯᏍᏗ. ᚠᚢᚦᚨᚱᚲ runes.",
    "𝔗𝔥𝔢 𝔮𝔲𝔦𝔠𝔨 𝔟𝔯𝔬𝔴𝔫 𝔣𝔬𝔵 and 𝐛𝐨𝐥𝐝 𝑖𝑡𝑎𝑙𝑖𝑐 math letters.",
    "Ｆｕｌｌｗｉｄｔｈ　ｔｅｘｔ　ａｎｄ　１２３４５。",
]

CODE = [
    "def fib(n):\n    if n < 2:\n        return n\n    return fib(n - 1) + fib(n - 2)\n",
    "#include <stdio.h>\n\nint main(void) {\n\tprintf(\"Hello, %s!\\n\", \"world\");\n\treturn 0;\n}\n",
    "for (int i = 0; i < n; ++i) {\n    sum += a[i] * b[i];  // dot product\n}",
    "const add = (a, b) => a + b;\nconsole.log(`sum: ${add(1, 2)}`);",
    "fn main() {\n    let v: Vec<u32> = (0..10).map(|x| x * x).collect();\n    println!(\"{:?}\", v);\n}",
    "<html>\n  <body>\n    <div class=\"main\">Hello &amp; welcome</div>\n  </body>\n</html>",
    "{\"name\": \"nanovllm\", \"version\": \"0.1.0\", \"tags\": [\"llm\", \"inference\"], \"n\": null}",
    "SELECT id, name FROM users WHERE age >= 18 AND name LIKE '%son' ORDER BY id DESC;",
    "#!/bin/bash\nset -euo pipefail\nfor f in *.txt; do echo \"$f\"; done\n",
    "\\begin{equation}\n  E = mc^2 \\quad \\int_0^\\infty e^{-x^2} dx = \\frac{\\sqrt{\\pi}}{2}\n\\end{equation}",
    "# Title\n\n- item one\n- item **two**\n\n```python\nprint('hi')\n```\n",
    "    \tmixed_indent = True\n\t    return None\r\n",
    "x=1;y=2;z=x+y*3-4/5%6**7//8",
    "if (a != b && c <= d || !e) { return a->b.c[d]; }",
    "import numpy as np\narr = np.zeros((3, 4), dtype=np.float32)\nprint(arr.shape)  # (3, 4)",
    "https://example.com/path/to/page?query=value&other=123#fragment",
    "user@example.com, first.last+tag@sub.domain.org",
    "C:\\Users\\Admin\\Documents\\file.txt and /usr/local/bin/python3",
    "0x1F600 0b101010 0o755 1e-10 3.14159 -42 +7 1_000_000",
    "aGVsbG8gd29ybGQgdGhpcyBpcyBiYXNlNjQgZW5jb2RlZCB0ZXh0IQ==",
]

WHITESPACE = [
    " ", "  ", "   ", "\t", "\n", "\r\n", "\n\n", "\n\n\n", " \n ", "\t\t\t", " \t \t",
    "a  b", "a   b", "a    b", "a\tb", "a\nb", "a\r\nb", "a \n b", "a\n\n\nb", "   leading",
    "trailing   ", "  both  ", "\u00a0nbsp\u00a0", "ideographic\u3000space", "em\u2003space",
    "mongolian\u180evowel", "zero\u200bwidth", "bom\ufeffhere", "line\u2028sep\u2029para",
    "nel\u0085here", "vt\u000bff\u000c", "fs\u001cgs\u001drs\u001eus\u001f",
]

EMOJI = [
    "😀", "👍🏽", "👨‍👩‍👧‍👦", "🏳️‍🌈", "🇯🇵🇺🇸", "1️⃣", "❤️", "👩🏿‍💻", "🧑‍🤝‍🧑", "🤷‍♂️",
    "I love 🍕 and 🍣!", "✨🚀🌟", "😀😃😄😁😆😅😂🤣", "👋🏻👋🏼👋🏽👋🏾👋🏿", "🫠🫡🫢",
    "emoji at end 🎉", "🎉 emoji at start", "a😀b", "☺︎ ☺️ ☺",
]

COMBINING = [
    "e\u0301", "cafe\u0301", "n\u0303", "A\u030a", "a\u0328\u0301", "o\u0308\u0304",
    "Z\u0351\u036b\u0343\u036a\u0302\u036b\u033d\u034f\u0334\u0319\u0324\u031e\u0349\u035a\u032f\u031e\u0320\u034dA\u036b\u0357\u0334\u0362\u0335\u031c\u0330\u0354L\u0368\u0367\u0369\u0358\u0320G\u0311\u0357\u030e\u0305\u035b\u0341\u0334\u033b\u0348\u034d\u0354\u0339O",
    "\u1100\u1161\u11a8", "\u1112\u1161\u11ab\u1100\u1173\u11af", "\u0915\u093c", "\u0928\u093c",
    "\u0344", "\u212b", "\u2126", "\u1e9b\u0323", "\u0301leading mark", "q\u0307\u0323",
    "\u00c5\u212b", "\u0041\u030a\u0301", "\u05d1\u05bc", "\ufb2c", "\u0958", "\u2000\u2001",
    "\uac00\u11a8", "\u0f73", "\u0f77", "\u1d15e",
]

NUMBERS = [
    "0", "7", "42", "123", "1234", "12345", "123456789", "1234567890123456789012345",
    "3.14159265358979", "1,234,567.89", "-0.000001", "2024-01-15", "12:34:56",
    "+1 (555) 123-4567", "٠١٢٣٤٥٦٧٨٩", "०१२३४५६७८९", "１２３", "²³¹", "Ⅻ ⅻ", "½ ¾ ⅞",
    "v1.2.3", "1e10", "0.5%", "$100.00", "€50", "¥1000", "1st 2nd 3rd 4th",
]

CONTRACTIONS = [
    "I'm", "you're", "we've", "they'll", "she'd", "it's", "don't", "DON'T", "I'M", "YOU'RE",
    "We'Ve", "it’s", "can't've", "'s", "'S", "'t", "'ſ", "'Ll", "o'clock", "rock'n'roll",
    "'''", "''", "' s", "'re'", "l'homme", "dell'arte",
]

SPECIAL_TOKENS = [
    "<|endoftext|>", "<|im_start|>", "<|im_end|>", "<think>", "</think>", "<tool_call>",
    "</tool_call>", "<|fim_prefix|>", "<|begin_of_text|>", "<|end_of_text|>", "<|eot_id|>",
    "<|start_header_id|>", "<|end_header_id|>", "<|reserved_special_token_5|>", "<s>", "</s>",
    "<unk>", "<pad>", "<bos>", "<eos>", "<mask>", "<start_of_turn>", "<end_of_turn>",
    "<unused0>", "<unused99>", "<table>", "</td>", "[multimodal]", "<image_soft_token>",
    "<start_of_image>", "[SEP]", "zebra",
]

EDGE = [
    "", "a", "A", ".", "!", "?", "'", "\"", "-", "_", "~", "`", "<", ">", "|", "\\", "/",
    "\x00", "\x01", "\x7f", "\x1b[31mred\x1b[0m", "\ufffd", "\uffff", "\U0010ffff", "\ue000",
    "\U000f0000", "\u200d", "\u200e\u200f", "\u202eRTL override", "a" * 300, "ab" * 150,
    "x" * 1000, "!" * 50, "." * 40, "-" * 80, "=" * 64, "#" * 20, "😀" * 30, "\n" * 40,
    " " * 100, "\t" * 33, "▁", "▁▁", "▁hello", "hello▁world", "Ġ", "Ċ", "<0x41>", "<0xFF>",
    "zebra", "zebras", "a zebra!", "zebra_crossing", "the zebra", "  <mask>  ", "x<mask>y",
    "[SEP]   next", "[SEP]", "<s>", " <s> ", "<s><s></s>", "<|im_start|><|im_end|>",
    "<|im_", "<s", "< s>", "<|endoftext", "<unused", "<|im_start|>user\nHi<|im_end|>\n",
]


def mixed_strings(rng, pools, count):
    """Random mixtures of fragments: every pool against every other, with varied joiners."""
    joiners = ["", " ", "  ", "\n", "\t", ", ", " - ", "\n\n", "   ", ". "]
    out = []
    flat = [s for pool in pools for s in pool]
    for _ in range(count):
        n = rng.randint(1, 5)
        parts = [rng.choice(flat) for _ in range(n)]
        if rng.random() < 0.3:
            parts.insert(rng.randint(0, n), rng.choice(SPECIAL_TOKENS))
        s = parts[0]
        for p in parts[1:]:
            s += rng.choice(joiners) + p
        if rng.random() < 0.2:
            s = rng.choice([" ", "  ", "\n", "\t"]) + s
        if rng.random() < 0.2:
            s = s + rng.choice([" ", "  ", "\n", "\t", "\n\n"])
        if rng.random() < 0.1:
            s = unicodedata.normalize(rng.choice(["NFD", "NFKD", "NFC", "NFKC"]), s)
        out.append(s)
    return out


def build_corpus():
    rng = random.Random(20261128)
    base = LANGUAGES + CODE + WHITESPACE + EMOJI + COMBINING + NUMBERS + CONTRACTIONS + SPECIAL_TOKENS + EDGE
    corpus = list(base)
    # Normalization variants: NFC/NFD/NFKC/NFKD of every language sentence and combining case.
    for s in LANGUAGES + COMBINING + EMOJI:
        for form in ("NFD", "NFKD", "NFC", "NFKC"):
            t = unicodedata.normalize(form, s)
            if t != s:
                corpus.append(t)
    # Case variants and special tokens glued into text in every position.
    for s in LANGUAGES[:12]:
        corpus += [s.upper(), s.lower()]
    for tok in SPECIAL_TOKENS:
        corpus += [f"Hello{tok}world", f"Hello {tok} world", f"{tok}", f"{tok}{tok}",
                   f" {tok}", f"{tok} ", f"\n{tok}\n", f"x{tok}", f"{tok}y", f"  {tok}  text"]
    # Whitespace runs of every length up to 40, alone and between words.
    for n in range(1, 41):
        corpus += [" " * n, "a" + " " * n + "b", "\n" * n + "x", "x" + "\t" * n, " " * n + "\n"]
    # Digits: runs of every length up to 30.
    for n in range(1, 31):
        corpus.append("".join(str((i * 7 + n) % 10) for i in range(n)))
        corpus.append("x" + "9" * n + "y")
    pools = [LANGUAGES, CODE, WHITESPACE, EMOJI, COMBINING, NUMBERS, CONTRACTIONS, EDGE[:40]]
    corpus += mixed_strings(rng, pools, 2000 - len(corpus) + 600)
    # Substrings cut at random character positions (words cut mid-way, lone marks).
    for _ in range(200):
        s = rng.choice(LANGUAGES + CODE)
        i = rng.randrange(len(s))
        j = rng.randrange(i, len(s) + 1)
        corpus.append(s[i:j])
    # Deduplicate, keeping order. Python str can hold lone surrogates; those cannot be UTF-8.
    seen, out = set(), []
    for s in corpus:
        if s in seen:
            continue
        try:
            s.encode("utf-8")
        except UnicodeEncodeError:
            continue
        seen.add(s)
        out.append(s)
    return out


# ---------------------------------------------------------------------------------------------
# Benchmark corpus (built on the CPU machine from local text, carried to the GPU machine).

def bench_corpus(out_path, target_bytes=11 * 1024 * 1024):
    rng = random.Random(7)

    def chunks(text, size=4096):
        """Documents of at most `size` bytes, cut at line ends."""
        cur, n = [], 0
        for line in text.splitlines(keepends=True):
            if n and n + len(line.encode()) > size:
                yield "".join(cur)
                cur, n = [], 0
            cur.append(line)
            n += len(line.encode())
        if cur:
            yield "".join(cur)

    def files(root, suffixes, budget):
        got, total = [], 0
        for dirpath, dirnames, names in os.walk(root):
            dirnames.sort()
            for name in sorted(names):
                if not name.endswith(suffixes):
                    continue
                path = os.path.join(dirpath, name)
                try:
                    raw = gzip.open(path).read() if name.endswith(".gz") else open(path, "rb").read()
                    text = raw.decode("utf-8")
                except (OSError, UnicodeDecodeError, EOFError):
                    continue
                got.extend(chunks(text))
                total += len(raw)
                if total >= budget:
                    return got
        return got

    mb = 1024 * 1024
    docs = []
    docs += files("/usr/share/doc", ("changelog.gz", "NEWS.gz", "README", "README.md", ".txt", "copyright"), 5 * mb)
    docs += files("/usr/lib/python3.11", (".py",), 3 * mb)
    docs += files("/usr/include/c++", (".h", ".tcc", "vector", "string", "map", "algorithm"), int(1.5 * mb))
    corpus = build_corpus()
    multi = []
    while sum(len(d.encode()) for d in multi) < int(1.5 * mb):
        multi.append("\n".join(rng.choice(corpus) for _ in range(rng.randint(10, 40))))
    docs += multi
    rng.shuffle(docs)
    total = 0
    with open(out_path, "w", encoding="utf-8") as f:
        for d in docs:
            f.write(json.dumps(d, ensure_ascii=False) + "\n")
            total += len(d.encode())
            if total >= target_bytes:
                break
    print(f"bench corpus: {total / mb:.2f} MiB of text in {out_path}")


# ---------------------------------------------------------------------------------------------
# On the GPU machine.

def train_gpt2(corpus_path, out_dir):
    from tokenizers import AddedToken, Tokenizer, decoders, models, pre_tokenizers, processors, trainers

    docs = [json.loads(line) for line in open(corpus_path, encoding="utf-8")]
    tok = Tokenizer(models.BPE())
    # GPT-2's own settings (its tokenizer.json): byte-level pre-tokenizer with the GPT-2 regex,
    # no prefix space; byte-level decoder and post-processor.
    tok.pre_tokenizer = pre_tokenizers.ByteLevel(add_prefix_space=False, trim_offsets=True, use_regex=True)
    tok.decoder = decoders.ByteLevel()
    tok.post_processor = processors.ByteLevel(trim_offsets=False)
    trainer = trainers.BpeTrainer(
        vocab_size=4096, min_frequency=2, show_progress=False,
        initial_alphabet=pre_tokenizers.ByteLevel.alphabet(),
        special_tokens=[AddedToken("<|endoftext|>", special=True, normalized=True)],
    )
    tok.train_from_iterator(docs, trainer)
    # Added tokens exercising every flag (GPT-2 itself has only <|endoftext|>).
    tok.add_special_tokens([AddedToken("<mask>", lstrip=True, normalized=False, special=True),
                            AddedToken("[SEP]", rstrip=True, normalized=False, special=True)])
    tok.add_tokens([AddedToken("zebra", single_word=True, normalized=True, special=False)])
    os.makedirs(out_dir, exist_ok=True)
    tok.save(os.path.join(out_dir, "tokenizer.json"))
    with open(os.path.join(out_dir, "tokenizer_config.json"), "w") as f:
        json.dump({"bos_token": "<|endoftext|>", "eos_token": "<|endoftext|>",
                   "unk_token": "<|endoftext|>", "model_max_length": 1024,
                   "tokenizer_class": "GPT2Tokenizer"}, f, indent=2)
    print(f"gpt2-style: vocab {tok.get_vocab_size()} -> {out_dir}")


def goldens(dirs, out_dir):
    import tokenizers
    from tokenizers import Tokenizer

    os.makedirs(out_dir, exist_ok=True)
    corpus = build_corpus()
    with open(os.path.join(out_dir, "corpus.jsonl"), "w", encoding="utf-8") as f:
        for s in corpus:
            f.write(json.dumps(s, ensure_ascii=False) + "\n")
    for d in dirs:
        name = os.path.basename(os.path.normpath(d))
        try:
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        except BaseException as e:
            print(f"goldens: {name}: HF refuses the tokenizer: {e!r}")
            continue
        vocab = tok.get_vocab_size(with_added_tokens=True)
        rng = random.Random(name)
        byte_ids = [tok.token_to_id(f"<0x{b:02X}>") for b in range(256)]
        byte_ids = [i for i in byte_ids if i is not None]
        specials = [t.content for t in tok.get_added_tokens_decoder().values() if t.special]
        special_ids = [tok.token_to_id(s) for s in specials]
        path = os.path.join(out_dir, f"{name}.jsonl")
        n_rand = 300
        with open(path, "w", encoding="utf-8") as f:
            f.write(json.dumps({"tokenizer": name, "tokenizers": tokenizers.__version__,
                                "strings": len(corpus), "random_sequences": n_rand}) + "\n")
            for s in corpus:
                try:
                    ids = tok.encode(s, add_special_tokens=False).ids
                    ids_sp = tok.encode(s, add_special_tokens=True).ids
                    rec = {"ids": ids}
                    dec = tok.decode(ids, skip_special_tokens=False)
                    dec_sp = tok.decode(ids_sp, skip_special_tokens=False)
                    dec_skip = tok.decode(ids_sp, skip_special_tokens=True)
                except BaseException as e:  # a Rust panic arrives as PanicException
                    f.write(json.dumps({"error": repr(e)[:200]}) + "\n")
                    continue
                if ids_sp != ids:
                    rec["ids_sp"] = ids_sp
                if dec != s:
                    rec["dec"] = dec
                if dec_sp != dec:
                    rec["dec_sp"] = dec_sp
                if dec_skip != dec:
                    rec["dec_skip"] = dec_skip
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
            for _ in range(n_rand):
                seq = []
                for _ in range(rng.randint(1, 24)):
                    r = rng.random()
                    if r < 0.3 and byte_ids:
                        seq.append(rng.choice(byte_ids))
                    elif r < 0.4 and special_ids:
                        seq.append(rng.choice(special_ids))
                    else:
                        seq.append(rng.randrange(vocab))
                try:
                    rec = {"rand": seq, "dec": tok.decode(seq, skip_special_tokens=False),
                           "dec_skip": tok.decode(seq, skip_special_tokens=True)}
                except BaseException as e:
                    rec = {"error": repr(e)[:200]}
                f.write(json.dumps(rec, ensure_ascii=False) + "\n")
        print(f"goldens: {name}: {len(corpus)} strings, {n_rand} random sequences, "
              f"{os.path.getsize(path) / 1024:.0f} KiB")


def make_variants(variants_path, bases, out_dir):
    variants = json.load(open(variants_path, encoding="utf-8"))
    base_dirs = dict(b.split("=", 1) for b in bases)
    for name, v in variants.items():
        if name.startswith("_"):
            continue
        base = base_dirs[v["base"]]
        j = json.load(open(os.path.join(base, "tokenizer.json"), encoding="utf-8"))
        j.update(v["overrides"])
        os.makedirs(os.path.join(out_dir, name), exist_ok=True)
        with open(os.path.join(out_dir, name, "tokenizer.json"), "w", encoding="utf-8") as f:
            json.dump(j, f, ensure_ascii=False)
        print(f"variant {name}: {v['base']} with {sorted(v['overrides'])} replaced")


def fnv1a(ids):
    h = 0xCBF29CE484222325
    for i in ids:
        for b in int(i).to_bytes(4, "little"):
            h = ((h ^ b) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    return h


def bench(corpus_path, dirs, hash_dir, repeats):
    import tokenizers
    from tokenizers import Tokenizer

    docs = [json.loads(line) for line in open(corpus_path, encoding="utf-8")]
    nbytes = sum(len(d.encode()) for d in docs)
    for d in dirs:
        name = os.path.basename(os.path.normpath(d))
        tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
        tok.encode("warm up the cache of nothing", add_special_tokens=False)
        best_single = float("inf")
        for _ in range(repeats):
            # A fresh tokenizer each time, so the BPE cache starts empty as ours does.
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            t0 = time.perf_counter()
            encs = [tok.encode(x, add_special_tokens=False).ids for x in docs]
            best_single = min(best_single, time.perf_counter() - t0)
        ntok = sum(len(e) for e in encs)
        with open(os.path.join(hash_dir, f"{name}.hf.hashes"), "w") as f:
            for e in encs:
                f.write(f"{fnv1a(e):016x} {len(e)}\n")
        best_batch = float("inf")
        for _ in range(repeats):
            tok = Tokenizer.from_file(os.path.join(d, "tokenizer.json"))
            t0 = time.perf_counter()
            batch = tok.encode_batch(docs, add_special_tokens=False)
            best_batch = min(best_batch, time.perf_counter() - t0)
        assert sum(len(e.ids) for e in batch) == ntok
        print(json.dumps({"impl": "hf", "tokenizer": name, "tokenizers": tokenizers.__version__,
                          "bytes": nbytes, "docs": len(docs), "tokens": ntok,
                          "single_s": round(best_single, 4),
                          "single_MBps": round(nbytes / best_single / 1e6, 2),
                          "batch_threads": os.cpu_count(), "batch_s": round(best_batch, 4),
                          "batch_MBps": round(nbytes / best_batch / 1e6, 2)}), flush=True)


def main():
    ap = argparse.ArgumentParser(description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter)
    sub = ap.add_subparsers(dest="cmd", required=True)
    p = sub.add_parser("bench-corpus"); p.add_argument("out")
    p = sub.add_parser("train-gpt2"); p.add_argument("corpus"); p.add_argument("out_dir")
    p = sub.add_parser("goldens"); p.add_argument("dirs", nargs="+"); p.add_argument("--out", required=True)
    p = sub.add_parser("make-variants"); p.add_argument("variants"); p.add_argument("bases", nargs="+")
    p.add_argument("--out", required=True)
    p = sub.add_parser("bench"); p.add_argument("corpus"); p.add_argument("dirs", nargs="+")
    p.add_argument("--hash-dir", required=True); p.add_argument("--repeats", type=int, default=2)
    p = sub.add_parser("print-corpus-stats")
    a = ap.parse_args()
    if a.cmd == "bench-corpus":
        bench_corpus(a.out)
    elif a.cmd == "train-gpt2":
        train_gpt2(a.corpus, a.out_dir)
    elif a.cmd == "goldens":
        goldens(a.dirs, a.out)
    elif a.cmd == "make-variants":
        make_variants(a.variants, a.bases, a.out)
    elif a.cmd == "bench":
        bench(a.corpus, a.dirs, a.hash_dir, a.repeats)
    elif a.cmd == "print-corpus-stats":
        c = build_corpus()
        print(len(c), "strings,", sum(len(s.encode()) for s in c), "bytes,",
              hashlib.sha256("\n".join(c).encode()).hexdigest()[:16])


if __name__ == "__main__":
    sys.exit(main())
