"""lesionlib.arms and lesionlib.figures: one registry entry per arm and per figure, and everything else follows."""
import matplotlib

matplotlib.use("Agg")
import pytest  # noqa: E402

from lesionlib import arms, figures  # noqa: E402
from lesionlib.experiment import generic_spec, model_spec  # noqa: E402
from test_experiment import tiny_profile  # noqa: E402


@pytest.fixture
def warm_base():
    """A new arm registered for the test (Base with G's weights but a fresh head: any builder will do), removed after."""
    @arms.register_arm("lestest", "LesTest", "Transfer(d_t | G), tested", "#000000", "*", "++", figures=True,
                       controls=True)
    def lestest(P, source, target, n_t, n_s, seed, fold=None):
        return model_spec(P, "target", target, n_t, seed + 100, generic_spec(P), fold)
    yield "lestest"
    del arms.ARMS["lestest"]


def test_the_registry_holds_the_papers_arms_ours_and_the_controls_in_order():
    assert arms.arm_names("paper") == ("base", "lesagn", "lesaug")
    assert arms.arm_names("figures") == ("base", "lesagn", "lesaug", "lesonly")
    assert arms.arm_names("controls") == ("base", "lesagn", "lesaug", "lesshuf", "lesstat", "agnstat")
    assert arms.label("lesaug") == "LesAug"
    assert arms.label("not an arm") == "not an arm"
    assert arms.arm_of_label("LesShuf") == "lesshuf"


def test_an_unknown_arm_group_or_arm_is_one_clear_error(cache_dir):
    with pytest.raises(ValueError, match="allowed: all, figures, paper, controls"):
        arms.arm_names("fig1")
    with pytest.raises(ValueError, match="unknown arm 'lesonly2'"):
        arms.arm_spec(tiny_profile(cache_dir), "lesonly2", "brain_to_lung", 12, 16, 0)


def test_an_arm_registered_twice_is_refused():
    with pytest.raises(ValueError, match="registered twice"):
        arms.register_arm("base", "Base", "", "#111111", "o", "")(lambda *a: None)


def test_adding_an_arm_is_one_entry_and_every_figure_page_and_plot_takes_it(cache_dir, warm_base):
    P = tiny_profile(cache_dir)
    fig1 = figures.FIGURES["fig1"].specs(P, "brain_to_lung")
    assert {k[1] for k in fig1} == {"base", "lesagn", "lesaug", "lesonly", warm_base}
    controls = figures.FIGURES["controls"].specs(P, "brain_to_lung")
    assert warm_base in {k[1] for k in controls}
    spec = fig1[("High", warm_base, 0)]
    assert spec["init"] == generic_spec(P) and spec["seed"] == 100
    assert arms.labels()[warm_base] == "LesTest"

    from lesionlib import plots
    fig = plots.control_bars({1.0: {a: (0.6, 0.5, 0.7) for a in arms.arm_names("controls")}})
    assert [t.get_text() for t in fig.axes[0].get_xticklabels()][-1] == "LesTest"


def test_figures_name_their_keys_arms_and_claims_and_claims_find_their_page():
    F = figures.FIGURES
    assert list(F) == ["fig1", "fig2", "fig3", "fig4", "fig5", "controls"]
    assert F["fig1"].keys == ("size", "arm", "seed")
    assert F["fig4"].arms == ("lesaug",)
    assert F["controls"].arm_labels() == "Base, LesAgn, LesAug, LesShuf, LesStat, AgnStat"
    assert [figures.claim_page(c) for c in ("(a)", "(b)", "(c)", "(d)", "(e)", "(f)", "(g)", "(h)", "(i)")] == \
        ["fig1", "fig1", "fig2", "fig3", "fig5", "conclusions", "fig2", "controls", "conclusions"]


def test_a_registered_figure_joins_the_grid(cache_dir):
    P = tiny_profile(cache_dir)

    @figures.register_figure("figx", "Fig X", ("arm", "seed"), ("base",), lambda P: "nothing")
    def figx(P, direction):
        return {("base", s): arms.arm_spec(P, "base", direction, 12, 16, s) for s in P.seeds}
    try:
        grid = figures.grid_specs(P, ("brain_to_lung",))
        assert ("figx", "brain_to_lung") in grid and len(grid[("figx", "brain_to_lung")]) == len(P.seeds)
        with pytest.raises(ValueError, match="registered twice"):
            figures.register_figure("figx", "Fig X", ("arm", "seed"), ("base",), lambda P: "")(figx)
    finally:
        del figures.FIGURES["figx"]
