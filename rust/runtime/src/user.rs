//! The user switch: supplementary groups, then group, then user (raw syscalls in the child).

use crate::plan::Step;
use crate::spec::User;

pub(crate) fn steps(user: &User) -> Vec<Step> {
    vec![Step::Setgroups(user.additional_gids.clone()), Step::Setgid(user.gid), Step::Setuid(user.uid)]
}
