//! The driver's idle spin window (`Spin`): stretched to the recent gaps, within bounds.

use std::time::Duration;

use crate::driver::Spin;

const US: Duration = Duration::from_micros(1);

fn after(base: Duration, gaps: &[Duration]) -> Duration {
    let mut spin = Spin::new(base);
    for &g in gaps {
        spin.observe(g);
    }
    spin.window()
}

#[test]
fn stretches_to_twice_the_recent_gaps_when_they_are_a_little_longer() {
    let w = after(50 * US, &[60 * US; 64]);
    assert!(w > 110 * US && w <= 120 * US, "{w:?}");
}

#[test]
fn keeps_the_configured_spin_for_short_or_long_gaps() {
    assert_eq!(after(50 * US, &[5 * US; 64]), 50 * US);
    assert_eq!(after(50 * US, &[Duration::from_millis(5); 64]), 50 * US);
    assert_eq!(after(50 * US, &[]), 50 * US);
}

#[test]
fn never_spins_when_told_not_to() {
    assert_eq!(after(Duration::ZERO, &[60 * US; 64]), Duration::ZERO);
}

#[test]
fn never_more_than_the_stretch() {
    for gap in [90, 99, 100, 101, 150] {
        assert!(after(50 * US, &[gap * US; 64]) <= 50 * US * Spin::STRETCH);
    }
}
