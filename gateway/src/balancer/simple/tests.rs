use super::*;
use crate::endpoint::{Endpoint, sorted_members};

fn members(weights: &[u32]) -> Vec<Member> {
    let eps: Vec<Endpoint> = weights
        .iter()
        .enumerate()
        .map(|(i, &w)| Endpoint::new(format!("10.0.0.{i}:80"), w))
        .collect();
    sorted_members(&eps).unwrap()
}

fn counts(picks: impl Iterator<Item = usize>, n: usize) -> Vec<usize> {
    let mut c = vec![0; n];
    picks.for_each(|p| c[p] += 1);
    c
}

#[test]
fn equal_weights_round_robin_visits_each_endpoint_once_per_period() {
    let rr = RoundRobin::new(&members(&[1, 1, 1]), 3, 0);
    let seq: Vec<usize> = (0..6).map(|_| rr.pick(&[]).unwrap()).collect();
    assert_eq!(seq, vec![0, 1, 2, 0, 1, 2]);
}

#[test]
fn the_seed_moves_round_robins_start() {
    let rr = RoundRobin::new(&members(&[1, 1, 1]), 3, 4);
    assert_eq!(rr.pick(&[]), Some(1));
}

#[test]
fn weighted_round_robin_interleaves_by_deadline() {
    let rr = RoundRobin::new(&members(&[1, 3]), 2, 0);
    let seq: Vec<usize> = (0..8).map(|_| rr.pick(&[]).unwrap()).collect();
    // Endpoint 1 (weight 3) is due at 1/3, 2/3, 1; endpoint 0 at 1: the tie goes to key order.
    assert_eq!(seq, vec![1, 1, 0, 1, 1, 1, 0, 1]);
}

#[test]
fn huge_weights_are_scaled_to_a_bounded_schedule_keeping_ratios() {
    let rr = RoundRobin::new(&members(&[1_000_000, 3_000_001]), 2, 0);
    assert!(rr.schedule.len() as u64 <= SCHEDULE_CAP + 2);
    let c = counts(rr.schedule.iter().map(|&e| e as usize), 2);
    assert!((c[1] as f64 / c[0] as f64 - 3.0).abs() < 0.01, "{c:?}");
}

#[test]
fn round_robin_skips_excluded_endpoints_and_reports_all_excluded() {
    let rr = RoundRobin::new(&members(&[1, 1, 1]), 3, 0);
    assert_eq!(rr.pick(&[0]), Some(1));
    assert_eq!(rr.pick(&[1, 2]), Some(0));
    assert_eq!(rr.pick(&[0, 1, 2]), None);
}

#[test]
fn random_draws_follow_weights() {
    let draw = Draw::new(&members(&[1, 2, 0, 1]), 4);
    let c = counts((0..40_000u64).map(|i| draw.draw(mix(i))), 4);
    assert_eq!(c[2], 0, "weight 0 is never drawn");
    assert!((c[1] as f64 / c[0] as f64 - 2.0).abs() < 0.1, "{c:?}");
    assert!((c[3] as f64 / c[0] as f64 - 1.0).abs() < 0.1, "{c:?}");
}

#[test]
fn uniform_draws_use_the_whole_range() {
    let draw = Draw::new(&members(&[5, 5]), 2);
    assert_eq!(draw.draw(0), 0);
    assert_eq!(draw.draw(u64::MAX), 1);
}

#[test]
fn random_picks_avoid_excluded_endpoints() {
    let draw = Draw::new(&members(&[1, 1, 1, 1]), 4);
    for r in 0..1_000u64 {
        let e = draw.pick(mix(r), &[0, 2, 3]).unwrap();
        assert_eq!(e, 1);
    }
    assert_eq!(draw.pick(7, &[3, 2, 1, 0]), None);
}

#[test]
fn least_request_prefers_the_idle_candidate() {
    let draw = Draw::new(&members(&[1, 1]), 2);
    let busy_zero = |e: usize| if e == 0 { 10 } else { 0 };
    // Two candidates per pick: endpoint 0 wins only when both candidates are endpoint 0.
    let c = counts(
        (0..4_000u64).map(|r| least_request(&draw, 2, mix(r), &[], busy_zero).unwrap()),
        2,
    );
    let share0 = c[0] as f64 / 4_000.0;
    assert!((share0 - 0.25).abs() < 0.03, "{c:?}");
    // With ten choices endpoint 0 almost never wins.
    let c = counts(
        (0..4_000u64).map(|r| least_request(&draw, 10, mix(r), &[], busy_zero).unwrap()),
        2,
    );
    assert!(c[0] < 20, "{c:?}");
}

#[test]
fn least_request_ties_go_to_the_first_candidate() {
    let draw = Draw::new(&members(&[1, 1, 1]), 3);
    for r in 0..100u64 {
        assert_eq!(least_request(&draw, 2, r, &[], |_| 3), Some(draw.draw(r)));
    }
}

#[test]
fn least_request_never_returns_an_excluded_endpoint() {
    let draw = Draw::new(&members(&[1, 1, 1]), 3);
    for r in 0..500u64 {
        assert_eq!(least_request(&draw, 2, mix(r), &[0, 1], |_| 0), Some(2));
    }
    assert_eq!(least_request(&draw, 2, 1, &[0, 1, 2], |_| 0), None);
}
