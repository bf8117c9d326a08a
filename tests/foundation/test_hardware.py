"""The dtype chooser is a pure function of the machine's capability."""

import pytest

from codetailor.hardware import (
    BF16,
    FP32,
    Capability,
    choose_dtypes,
    hardware_record,
    openmp_runtimes,
    parse_cpuinfo,
)

AVX2 = Capability(cpu_model="AMD EPYC", cores=2, flags=("avx2", "fma"), torch_avx512_bf16=False)
AVX512 = Capability(cpu_model="Intel Xeon (Skylake)", cores=2, flags=("avx2", "avx512bw", "avx512f", "fma"),
                    torch_avx512_bf16=False)
AVX512_BF16 = Capability(cpu_model="AMD EPYC", cores=2,
                         flags=("avx2", "avx512_bf16", "avx512bw", "avx512f", "fma"), torch_avx512_bf16=True)
AMX = Capability(cpu_model="Intel Xeon (Sapphire Rapids)", cores=2,
                 flags=("amx_bf16", "amx_int8", "amx_tile", "avx2", "avx512_bf16", "avx512f"))
CUDA = Capability(cpu_model="AMD EPYC", cores=16, flags=("avx2",), cuda_device="NVIDIA H200")


@pytest.mark.parametrize("cap,want,isa", [
    (AVX2, FP32, "AVX2"),
    (AVX512, FP32, "AVX-512"),
    (AVX512_BF16, BF16, "AVX-512 BF16"),
    (AMX, BF16, "AMX-BF16"),
    (CUDA, BF16, "AVX2"),
])
def test_auto_follows_the_capability(cap, want, isa):
    plan = choose_dtypes(cap)
    assert (plan.engine.value, plan.base_weights.value, plan.autocast.value) == (want, want, want)
    assert plan.engine.reason and "\n" not in plan.engine.reason
    assert cap.isa == isa


def test_torch_report_alone_is_enough_for_bf16():
    # /proc/cpuinfo unreadable (a container) but torch says AVX-512 BF16 works
    assert choose_dtypes(Capability(torch_avx512_bf16=True)).engine.value == BF16


def test_explicit_values_are_honoured():
    plan = choose_dtypes(AVX2, engine=BF16, base_weights=BF16, autocast=FP32)
    assert (plan.engine.value, plan.base_weights.value, plan.autocast.value) == (BF16, BF16, FP32)
    assert "explicit" in plan.engine.reason
    assert choose_dtypes(AMX, engine=FP32).engine.value == FP32


def test_reasons_name_the_cause():
    assert "AVX2" in choose_dtypes(AVX2).engine.reason
    assert "AVX-512 without BF16" in choose_dtypes(AVX512).engine.reason
    assert "H200" in choose_dtypes(CUDA).engine.reason


def test_parse_cpuinfo_keeps_model_and_relevant_flags():
    text = ("processor\t: 0\nmodel name\t: AMD EPYC 9B14\nflags\t\t: fpu sse avx2 avx512f avx512_bf16 vmx\n\n"
            "processor\t: 1\nmodel name\t: other\nflags\t\t: fpu\n")
    assert parse_cpuinfo(text) == ("AMD EPYC 9B14", ("avx2", "avx512_bf16", "avx512f"))


def test_hardware_record_has_the_choice():
    rec = hardware_record(choose_dtypes(AVX2), AVX2, threads=2)
    assert rec["dtypes"] == {"engine": FP32, "base_weights": FP32, "autocast": FP32}
    assert rec["isa"] == "AVX2" and rec["threads"] == 2 and rec["flags"] == ["avx2", "fma"]


def test_openmp_runtimes_from_maps(tmp_path):
    maps = tmp_path / "maps"
    maps.write_text("7f0-7f1 r-xp 0 08:01 1 /venv/lib/python3.11/site-packages/torch/lib/libgomp.so.1\n"
                    "7f2-7f3 r-xp 0 08:01 2 /venv/lib/libiomp5.so\n7f4-7f5 r-xp 0 08:01 3 /usr/lib/libc.so.6\n")
    assert openmp_runtimes(str(maps)) == ["libgomp.so.1", "libiomp5.so"]
