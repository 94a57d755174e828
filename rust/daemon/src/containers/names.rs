//! Container names: docker's pattern, and docker-style generated names (`adjective_surname`).

const LEFT: [&str; 48] = [
    "admiring",
    "adoring",
    "affectionate",
    "agitated",
    "amazing",
    "angry",
    "awesome",
    "beautiful",
    "blissful",
    "bold",
    "boring",
    "brave",
    "busy",
    "charming",
    "clever",
    "compassionate",
    "competent",
    "condescending",
    "confident",
    "cool",
    "cranky",
    "crazy",
    "dazzling",
    "determined",
    "distracted",
    "dreamy",
    "eager",
    "ecstatic",
    "elastic",
    "elated",
    "elegant",
    "eloquent",
    "epic",
    "exciting",
    "fervent",
    "festive",
    "flamboyant",
    "focused",
    "friendly",
    "frosty",
    "funny",
    "gallant",
    "gifted",
    "goofy",
    "gracious",
    "happy",
    "hardcore",
    "heuristic",
];

const RIGHT: [&str; 64] = [
    "agnesi",
    "albattani",
    "allen",
    "almeida",
    "archimedes",
    "ardinghelli",
    "aryabhata",
    "austin",
    "babbage",
    "banach",
    "bardeen",
    "bartik",
    "bassi",
    "bell",
    "benz",
    "bhabha",
    "bhaskara",
    "blackwell",
    "bohr",
    "booth",
    "borg",
    "bose",
    "boyd",
    "brahmagupta",
    "brattain",
    "brown",
    "carson",
    "cerf",
    "chandrasekhar",
    "chaplygin",
    "chatelet",
    "chatterjee",
    "clarke",
    "colden",
    "cori",
    "cray",
    "curie",
    "darwin",
    "davinci",
    "dijkstra",
    "dubinsky",
    "easley",
    "edison",
    "einstein",
    "elion",
    "engelbart",
    "euclid",
    "euler",
    "faraday",
    "fermat",
    "fermi",
    "feynman",
    "franklin",
    "galileo",
    "gates",
    "goldberg",
    "goldstine",
    "goodall",
    "hamilton",
    "hawking",
    "heisenberg",
    "hopper",
    "hypatia",
    "kepler",
];

/// docker's `[a-zA-Z0-9][a-zA-Z0-9_.-]+` (after an optional leading slash).
pub fn valid(name: &str) -> bool {
    let n = name.strip_prefix('/').unwrap_or(name);
    let mut chars = n.chars();
    n.len() >= 2
        && chars.next().is_some_and(|c| c.is_ascii_alphanumeric())
        && chars.all(|c| c.is_ascii_alphanumeric() || matches!(c, '_' | '.' | '-'))
}

/// A random `adjective_surname`; from the second attempt on, with a digit appended as docker does.
pub fn generate(random: u64, attempt: u32) -> String {
    let l = LEFT[(random % LEFT.len() as u64) as usize];
    let r = RIGHT[((random >> 16) % RIGHT.len() as u64) as usize];
    // Docker never names a container boring_wozniak; our lists lack wozniak, the rule stays.
    if attempt == 0 {
        format!("{l}_{r}")
    } else {
        format!("{l}_{r}{}", (random >> 32) % 10)
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn validates_and_generates() {
        assert!(valid("web") && valid("/web-1.a_b") && !valid("a") && !valid("-x") && !valid("a b"));
        let n = generate(0x1234_5678_9abc, 0);
        assert!(valid(&n) && n.contains('_'), "{n}");
        assert!(generate(7, 1).chars().last().unwrap().is_ascii_digit());
    }
}
