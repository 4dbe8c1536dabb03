"""What the model licences in the catalog let you do, summarised from each licence's own text.

One row per licence id of the catalog (``card["license"]``): may the weights be used commercially, are
derivatives bound to the same terms (share-alike), is use limited to research, does a use policy forbid
some uses, and does a user-count threshold end the free grant. ``source`` names the text the row was read from. The rows are a
summary to sort search results, not legal advice: the verdict column says "check" where it matters.

The groups the query understanding filters on are derived from the rows: ``COMMERCIAL`` (commercial use
without asking anyone first, possibly under a user threshold), ``PERMISSIVE`` (commercial use, no use
policy, no threshold, no share-alike), ``RESEARCH_ONLY``, ``USE_RESTRICTED``, ``USER_THRESHOLD``, ``LLAMA``.
"""

from __future__ import annotations

from dataclasses import KW_ONLY, dataclass

YES, NO, ASK = "yes", "no", "after registration"  # commercial use: free, forbidden, or after asking the owner


@dataclass(frozen=True)
class LicenseTerms:
    """What one licence allows (see the module docstring for each column)."""

    id: str
    name: str
    commercial: str  # YES, NO or ASK
    source: str
    _: KW_ONLY
    share_alike: bool = False
    research_only: bool = False
    use_restrictions: bool = False
    user_threshold: str = ""  # "" or the size above which a separate licence is needed


_META = "Meta's {0} Community License Agreement, §2 Additional Commercial Terms and the Acceptable Use Policy"
_RAIL = "Attachment A (use-based restrictions) of the {0}"
TABLE: dict[str, LicenseTerms] = {
    t.id: t
    for t in (
        LicenseTerms("apache-2.0", "Apache License 2.0", YES, "apache.org/licenses/LICENSE-2.0, §2-§4"),
        LicenseTerms("mit", "MIT License", YES, "opensource.org/license/mit (the notice must be kept)"),
        LicenseTerms("bsd-3-clause", "BSD 3-Clause License", YES, "opensource.org/license/bsd-3-clause"),
        LicenseTerms("bsd-2-clause", "BSD 2-Clause License", YES, "opensource.org/license/bsd-2-clause"),
        LicenseTerms("cc-by-4.0", "Creative Commons Attribution 4.0", YES, "creativecommons.org/licenses/by/4.0 §3(a)"),
        LicenseTerms(
            "cc-by-sa-3.0",
            "Creative Commons BY-SA 3.0",
            YES,
            "creativecommons.org/licenses/by-sa/3.0 §4(b)",
            share_alike=True,
        ),  # fmt: skip
        LicenseTerms(
            "cc-by-sa-4.0",
            "Creative Commons BY-SA 4.0",
            YES,
            "creativecommons.org/licenses/by-sa/4.0 §3(b)",
            share_alike=True,
        ),  # fmt: skip
        LicenseTerms(
            "cc-by-nc-4.0",
            "Creative Commons BY-NC 4.0",
            NO,
            "creativecommons.org/licenses/by-nc/4.0 §1(i), §2(a)",
            research_only=True,
        ),  # fmt: skip
        *(
            LicenseTerms(
                lic,
                f"Llama {ver} Community License",
                YES,
                _META.format(f"Llama {ver}"),
                use_restrictions=True,
                user_threshold="700M monthly active users",
            )  # fmt: skip
            for lic, ver in (
                ("llama2", "2"),
                ("llama3", "3"),
                ("llama3.1", "3.1"),
                ("llama3.2", "3.2"),
                ("llama3.3", "3.3"),
                ("llama4", "4"),
            )  # fmt: skip
        ),
        LicenseTerms(
            "gemma",
            "Gemma Terms of Use",
            YES,
            "ai.google.dev/gemma/terms §3.1-3.2 and the Prohibited Use Policy",
            use_restrictions=True,
        ),  # fmt: skip
        LicenseTerms(
            "qwen",
            "Tongyi Qianwen License Agreement",
            YES,
            "the Qwen LICENSE file on the Hub, §4(a) (over 100M MAU)",
            use_restrictions=True,
            user_threshold="100M monthly active users",
        ),  # fmt: skip
        LicenseTerms(
            "qwen-research",
            "Qwen Research License Agreement",
            NO,
            "the Qwen RESEARCH LICENSE file, §3 (non-commercial)",
            research_only=True,
        ),  # fmt: skip
        LicenseTerms(
            "deepseek",
            "DeepSeek License Agreement",
            YES,
            _RAIL.format("DeepSeek License Agreement v1.0"),
            use_restrictions=True,
        ),  # fmt: skip
        *(
            LicenseTerms(lic, name, YES, _RAIL.format(name), use_restrictions=True)
            for lic, name in (
                ("openrail", "OpenRAIL License"),
                ("openrail++", "OpenRAIL++-M License"),
                ("creativeml-openrail-m", "CreativeML OpenRAIL-M License"),
                ("bigscience-bloom-rail-1.0", "BigScience BLOOM RAIL License 1.0"),
                ("bigcode-openrail-m", "BigCode OpenRAIL-M License v1"),
            )
        ),
        LicenseTerms(
            "falcon-llm-license",
            "TII Falcon LLM License 2.0",
            YES,
            "TII Falcon License 2.0 (Apache 2.0 based) §7 and its Acceptable Use Policy",
            use_restrictions=True,
        ),  # fmt: skip
        LicenseTerms(
            "baichuan",
            "Baichuan 2 Model Community License",
            ASK,
            "Baichuan 2 Community License §5: written approval, under 1M daily active users",
            use_restrictions=True,
            user_threshold="1M daily active users",
        ),  # fmt: skip
        *(
            LicenseTerms(
                lic,
                name,
                ASK,
                f"the {name}: free commercial use after registering with the owner",
                use_restrictions=True,
            )  # fmt: skip
            for lic, name in (
                ("glm-4", "GLM-4 Model License"),
                ("codegeex4", "CodeGeeX4 Model License"),
                ("minicpm", "MiniCPM Model License"),
            )
        ),
        LicenseTerms(
            "mistral-research",
            "Mistral AI Research License",
            NO,
            "Mistral AI Research License §1 (research only)",
            research_only=True,
        ),  # fmt: skip
        LicenseTerms(
            "mnpl",
            "Mistral AI Non-Production License",
            NO,
            "Mistral AI Non-Production License §3 (no production use)",
            research_only=True,
        ),  # fmt: skip
        LicenseTerms(
            "microsoft-research-license",
            "Microsoft Research License",
            NO,
            "Microsoft Research License Agreement (non-commercial research purposes only)",
            research_only=True,
        ),  # fmt: skip
    )
}

COMMERCIAL = frozenset(t.id for t in TABLE.values() if t.commercial == YES)
PERMISSIVE = frozenset(
    t.id
    for t in TABLE.values()
    if t.commercial == YES and not (t.use_restrictions or t.user_threshold or t.share_alike)
)
RESEARCH_ONLY = frozenset(t.id for t in TABLE.values() if t.research_only)
USE_RESTRICTED = frozenset(t.id for t in TABLE.values() if t.use_restrictions)
USER_THRESHOLD = frozenset(t.id for t in TABLE.values() if t.user_threshold)
LLAMA = frozenset(t.id for t in TABLE.values() if t.id.startswith("llama"))


def verdict(license_id: str) -> str:
    """A few words on what ``license_id`` lets you do ("commercial ok", "research only", "check the licence")."""
    terms = TABLE.get((license_id or "").lower())
    if terms is None:
        return "unknown: check the licence"
    if terms.commercial == NO:
        return "research only" if terms.research_only else "no commercial use"
    limits = []
    if terms.user_threshold:
        limits.append("under " + terms.user_threshold.replace("monthly active users", "MAU"))
    elif terms.use_restrictions:
        limits.append("use policy")
    if terms.share_alike:
        limits.append("share-alike")
    start = "commercial after registration" if terms.commercial == ASK else "commercial ok"
    return start + (" (" + ", ".join(limits) + ")" if limits else "")
