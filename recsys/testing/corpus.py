"""A small fixed corpus for fast tests: 20 publications, 4 labels, 5 of each.

The four topics (``astronomy``, ``genomics``, ``robotics``, ``linguistics``) use
clearly different vocabularies, so any reasonable engine ranks same-label
publications first; years run from 2015 to 2024 so that year filters have
something to cut. The texts were written for this project.
"""

from __future__ import annotations

from recsys.domain import Publication

__all__ = ["SAMPLE_LABELS", "sample_publications"]

SAMPLE_LABELS = ("astronomy", "genomics", "robotics", "linguistics")

# (id, label, year, title, abstract)
_RECORDS: tuple[tuple[str, str, int, str, str], ...] = (
    ("astro-01", "astronomy", 2015, "Dark matter halos around dwarf galaxies",
     "We measure the rotation curves of forty dwarf galaxies with radio telescopes. "
     "The curves require dark matter halos that are denser near the galaxy centre than expected. "
     "Simulations of halo formation reproduce the observed galaxies only with strong stellar feedback."),
    ("astro-02", "astronomy", 2017, "Exoplanet transits observed by a small space telescope",
     "A space telescope monitored the brightness of ten thousand stars for two years. "
     "Periodic dips in brightness reveal transiting exoplanets, among them three rocky planets. "
     "We estimate the planet radii and the orbital periods from the transit light curves."),
    ("astro-03", "astronomy", 2019, "Supernova light curves as distance indicators",
     "Type Ia supernova explosions reach a nearly uniform peak brightness. "
     "We calibrate their light curves against nearby galaxies with known distances. "
     "The calibrated supernova distances constrain the expansion rate of the universe."),
    ("astro-04", "astronomy", 2021, "Radio telescope survey of pulsars in globular clusters",
     "A radio telescope survey found twelve new pulsars in globular star clusters. "
     "Timing the pulsar signals measures the gravitational acceleration inside each cluster. "
     "The clusters appear to hold dark remnants of massive stars near their centres."),
    ("astro-05", "astronomy", 2023, "Star formation in the spiral arms of nearby galaxies",
     "Infrared telescope images trace young stars along the spiral arms of nearby galaxies. "
     "Star formation is faster where the gas density of the arms is higher. "
     "The galaxies with strong spiral arms form stars at twice the average rate."),
    ("gen-01", "genomics", 2016, "Gene expression atlas of the developing mouse brain",
     "We sequenced the RNA of single cells from the developing mouse brain. "
     "Gene expression profiles group the cells into sixty cell types. "
     "Transcription factors that regulate each cell type are identified from the expression data."),
    ("gen-02", "genomics", 2018, "CRISPR screens find genes that control cell growth",
     "A genome-wide CRISPR screen knocked out every gene in human cancer cells. "
     "Cells lacking certain genes grew faster, revealing suppressors of cell growth. "
     "We confirm three of these genes with targeted mutations and expression assays."),
    ("gen-03", "genomics", 2020, "Genome sequencing of ancient wheat varieties",
     "We sequenced the genomes of forty ancient wheat varieties from seed collections. "
     "Comparing the genome sequences shows which genes changed during domestication. "
     "Genetic variants near growth genes explain the larger grains of modern wheat."),
    ("gen-04", "genomics", 2022, "DNA methylation patterns across human tissues",
     "DNA methylation silences genes differently in each human tissue. "
     "We profile methylation at a million genome sites in twenty tissues. "
     "Tissue-specific methylation marks predict gene expression better than DNA sequence alone."),
    ("gen-05", "genomics", 2024, "Mutations in bacterial genomes under antibiotic pressure",
     "Bacteria were grown for a thousand generations with rising antibiotic doses. "
     "Sequencing their genomes at each step reveals the order in which resistance mutations arise. "
     "The same genes mutate in every population, so the path to resistance is predictable."),
    ("rob-01", "robotics", 2015, "Grasp planning for robot hands with tactile sensors",
     "A robot hand with tactile sensors learns to grasp unfamiliar objects. "
     "The grasp planner adjusts finger positions from the contact forces the sensors measure. "
     "The robot succeeds on ninety percent of grasps of household objects."),
    ("rob-02", "robotics", 2017, "Legged robot locomotion over rough terrain",
     "We control a four-legged robot walking over rocks and stairs. "
     "A motion controller plans foot placement from depth camera maps of the terrain. "
     "The legged robot keeps its balance on slopes where wheeled robots slip."),
    ("rob-03", "robotics", 2019, "Motion planning for mobile robots in crowded spaces",
     "Mobile robots must plan paths among moving people. "
     "Our motion planner predicts pedestrian trajectories and avoids collisions. "
     "In a crowded hall the robot reaches its goal faster than with a reactive controller."),
    ("rob-04", "robotics", 2021, "Learning robot manipulation from human demonstrations",
     "A robot arm learns manipulation skills from a few human demonstrations. "
     "The controller generalises grasping and placing to objects it has not seen. "
     "Tactile feedback corrects the arm motion when an object slips from the gripper."),
    ("rob-05", "robotics", 2023, "Drone swarms that map buildings with onboard cameras",
     "A swarm of small drone robots maps the inside of a building. "
     "Each robot plans its motion to cover rooms the others have not visited. "
     "Camera images from all robots are merged into one map for search and rescue."),
    ("ling-01", "linguistics", 2016, "Word order variation across the languages of Europe",
     "We compare word order in the grammar of forty European languages. "
     "Verb position in subordinate clauses differs more than noun phrase order. "
     "Language contact explains much of the word order variation between neighbouring languages."),
    ("ling-02", "linguistics", 2018, "Vowel shifts in spoken English dialects",
     "Recordings of speakers from ten English dialects show shifting vowel sounds. "
     "Younger speakers pronounce several vowels further forward than older speakers. "
     "The vowel shift spreads from cities to rural dialects over two generations."),
    ("ling-03", "linguistics", 2020, "How children acquire the grammar of their first language",
     "Children learn grammar rules of their first language from the speech they hear. "
     "We record conversations between parents and children over three years. "
     "Verb inflection appears in children's speech before complex sentence grammar."),
    ("ling-04", "linguistics", 2022, "Documenting an endangered language of the Andes",
     "Fewer than a thousand speakers still use this endangered language. "
     "We recorded stories and conversations to document its grammar and vocabulary. "
     "The language marks evidence in every verb, a grammar feature shared with its neighbours."),
    ("ling-05", "linguistics", 2024, "Sign language grammar uses space to track referents",
     "Sign languages place referents at points in the space around the signer. "
     "Verbs move between these points to show who does what to whom. "
     "This spatial grammar appears in every sign language we compared, despite other differences."),
)


def sample_publications() -> list[Publication]:
    """The 20 sample publications, in a fixed order (5 per label, ids unique)."""
    return [
        Publication(id=pub_id, title=title, abstract=abstract, label=label, year=year)
        for pub_id, label, year, title, abstract in _RECORDS
    ]
