"""The shared golden vectors as a C header, so the C test needs no JSON parser (host and Cortex-M).

``golden_header(obj)`` turns the object ``python -m tflbayes.uncertainty.golden`` writes into
``golden_vectors.h``: one flat ``float`` array of inputs per section, ``double`` expected values
and ``int`` metadata rows, read by ``converters/micro/test/test_golden.c``.
"""
from __future__ import annotations

__all__ = ["golden_header"]


def _floats(name, values, ctype="float"):
    suffix = "f" if ctype == "float" else ""
    body = ",".join(f"{float(v)!r}{suffix}" if float(v) == float(v) else "NAN" for v in values) or "0"
    return f"static const {ctype} {name}[] = {{{body}}};\n"


def _ints(name, values, ctype="int32_t"):
    body = ",".join(f"{int(v)}" if ctype != "uint32_t" else f"{int(v)}u" for v in values) or "0"
    return f"static const {ctype} {name}[] = {{{body}}};\n"


def _prob_section(prefix, cases, key):
    meta, data, mean, exp, off, moff = [], [], [], [], 0, 0
    for c in cases:
        rows = c[key]
        s, k = len(rows), len(rows[0])
        meta += [s, k, off, moff]
        data += [v for r in rows for v in r]
        mean += c["mean_probs"]
        exp += [c["total"], c["aleatoric"], c["epistemic"]]
        off += s * k
        moff += k
    return (f"#define {prefix.upper()}_N {len(cases)}\n" + _ints(f"{prefix}_meta", meta) + _floats(f"{prefix}_in", data)
            + _floats(f"{prefix}_mean", mean, "double") + _floats(f"{prefix}_exp", exp, "double"))


def golden_header(obj: dict) -> str:
    """C source text of ``golden_vectors.h`` for the golden object ``obj``."""
    out = ["/* generated from tests/golden/uncertainty_golden.json by converters/micro/golden_header.py */\n",
           "#include <math.h>\n#include <stdint.h>\n"]
    out.append(_prob_section("dec", obj["decompose"], "probs"))
    out.append(_prob_section("lgt", obj["decompose_logits"], "logits"))
    d = obj["dirichlet"]
    meta, alpha, mean, exp, off = [], [], [], [], 0
    for c in d:
        meta += [len(c["alpha"]), off]
        alpha += c["alpha"]
        mean += c["mean_probs"]
        exp += [c["total"], c["aleatoric"], c["epistemic"]]
        off += len(c["alpha"])
    out += [f"#define DIR_N {len(d)}\n", _ints("dir_meta", meta), _floats("dir_in", alpha),
            _floats("dir_mean", mean, "double"), _floats("dir_exp", exp, "double")]
    g = obj["digamma"]
    out += [f"#define DIG_N {len(g)}\n", _floats("dig_x", [c["x"] for c in g]),
            _floats("dig_psi", [c["psi"] for c in g], "double")]
    dc = obj["decide"]
    meta, probs, st, off = [], [], [], 0
    for c in dc:
        meta += [len(c["mean_probs"]), off, c["class_index"]]
        probs += c["mean_probs"]
        st += [c["score"], c["threshold"]]
        off += len(c["mean_probs"])
    out += [f"#define DCD_N {len(dc)}\n", _ints("dcd_meta", meta), _floats("dcd_probs", probs), _floats("dcd_st", st)]
    dq = obj["dequantize"]
    meta, q, sc, vals, off = [], [], [], [], 0
    for c in dq:
        meta += [len(c["q"]), off, c["zero_point"]]
        q += c["q"]
        sc.append(c["scale"])
        vals += c["values"]
        off += len(c["q"])
    out += [f"#define DQ_N {len(dq)}\n", _ints("dq_meta", meta), _ints("dq_q", q, "int8_t"), _floats("dq_scale", sc),
            _floats("dq_values", vals, "double")]
    qz = obj["quantize"]
    meta, x, sc, q, off = [], [], [], [], 0
    for c in qz:
        meta += [len(c["x"]), off, c["zero_point"]]
        x += c["x"]
        sc.append(c["scale"])
        q += c["q"]
        off += len(c["x"])
    out += [f"#define QZ_N {len(qz)}\n", _ints("qz_meta", meta), _floats("qz_x", x), _floats("qz_scale", sc),
            _ints("qz_q", q)]
    cr = obj["crc32"]
    meta, data, crc, off = [], [], [], 0
    for c in cr:
        b = bytes.fromhex(c["bytes_hex"])
        meta += [len(b), off]
        data += list(b)
        crc.append(c["crc32"])
        off += len(b)
    out += [f"#define CRC_N {len(cr)}\n", _ints("crc_meta", meta), _ints("crc_data", data, "unsigned char"),
            _ints("crc_exp", crc, "uint32_t")]
    r = obj["rng"]
    out += [f"#define RNG_SEED {int(r['seed'])}ull\n", _ints("rng_u32", r["u32"], "uint32_t"),
            f"#define RNG_NU {len(r['uniform'])}\n#define RNG_NN {len(r['normal'])}\n",
            _floats("rng_uniform", r["uniform"], "double"), _floats("rng_normal", r["normal"], "double"),
            f"#define RNG0_NU {len(r['seed_0']['uniform'])}\n#define RNG0_NN {len(r['seed_0']['normal'])}\n",
            _floats("rng0_uniform", r["seed_0"]["uniform"], "double"),
            _floats("rng0_normal", r["seed_0"]["normal"], "double")]
    return "".join(out)
