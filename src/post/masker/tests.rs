use super::*;

fn settings() -> Settings {
    Settings {
        ignore_chars: vec![' ', '.', '-'],
        ignore_symbols: false,
        segmentation: false,
        homophones: false,
        mask: '*',
    }
}

fn masker_with(settings: Settings) -> SensitiveMasker {
    let words: Vec<String> = [
        "杀",
        "爆",
        "vx",
        "sb",
        "加微信",
        "第一",
        "傻逼",
        "大麻",
        "微信",
    ]
    .map(String::from)
    .into();
    let white: Vec<String> = ["杀菌", "秒杀", "爆款", "第一时间", "usb"]
        .map(String::from)
        .into();
    SensitiveMasker::new(&words, &white, settings).unwrap()
}

fn masker() -> SensitiveMasker {
    masker_with(settings())
}

#[test]
fn whitelist_first() {
    let m = masker();
    assert_eq!(m.mask("这款爆款杀菌洗衣液正在秒杀"), None);
    assert_eq!(m.mask("我们会第一时间发货"), None);
    assert_eq!(m.mask("杀人游戏"), Some("*人游戏".into()));
    assert_eq!(m.mask("爆款要爆了"), Some("爆款要*了".into()));
    assert_eq!(m.mask("全网第一"), Some("全网**".into()));
}

#[test]
fn folds_width_and_case_and_skips_separators() {
    let m = masker();
    assert_eq!(m.mask("加我ＶＸ"), Some("加我**".into()));
    assert_eq!(m.mask("加我Vx吧"), Some("加我**吧".into()));
    assert_eq!(m.mask("加微 信聊"), Some("****聊".into()));
    assert_eq!(m.mask("v.x: abc"), Some("***: abc".into()));
    assert_eq!(m.mask("普通的回复"), None);
}

#[test]
fn latin_words_match_whole() {
    let m = masker();
    assert_eq!(m.mask("USB接口"), None);
    assert_eq!(m.mask("WXGA屏幕"), None);
    assert_eq!(m.mask("1.5Vx2节"), None, "a digit before: a measurement");
    assert_eq!(
        m.mask("加vx123"),
        Some("加**123".into()),
        "digits after: a contact"
    );
    assert_eq!(m.mask("你个sb"), Some("你个**".into()));
}

#[test]
fn symbols_are_skipped_but_do_not_join_latin_letters() {
    let m = masker_with(Settings {
        ignore_symbols: true,
        ..settings()
    });
    assert_eq!(m.mask("加微❤信"), Some("****".into()));
    assert_eq!(m.mask("尺码S，B款"), None);
    assert_eq!(m.mask("s.b"), Some("***".into()));
}

#[test]
fn a_match_straddled_by_a_dictionary_word_is_kept() {
    let m = masker_with(Settings {
        segmentation: true,
        ..settings()
    });
    assert_eq!(m.mask("加厚大麻布袋"), None);
    assert_eq!(m.mask("轻微信号"), None);
    assert_eq!(m.mask("本品不含大麻"), Some("本品不含**".into()));
    assert_eq!(m.mask("请加微信"), Some("请***".into()));
}

#[test]
fn homophones_and_pinyin_match_when_asked() {
    let m = masker_with(Settings {
        homophones: true,
        ..settings()
    });
    assert_eq!(m.mask("加我薇信"), Some("加我**".into()));
    assert_eq!(m.mask("加我 weixin 吧"), Some("加我 ****** 吧".into()));
    assert_eq!(m.mask("明治维新"), None, "another tone");
    assert_eq!(
        masker().mask("加我薇信"),
        None,
        "off by default in these settings"
    );
}

#[test]
fn overlapping_sensitive_words_are_all_masked() {
    let m = masker();
    assert_eq!(m.mask("傻逼杀"), Some("***".into()));
}

#[test]
fn no_sensitive_words_means_no_automaton() {
    let m = SensitiveMasker::new(&[], &["爆款".into()], settings()).unwrap();
    assert_eq!(m.mask("爆款"), None);
}

/// A judge that masks every plain match but the ones with `feature`.
fn judge_leaving(feature: &str) -> MatchJudge {
    MatchJudge::new(&crate::config::JudgeConfig {
        bias: 2.0,
        weights: vec![(feature.into(), -5.0)],
        exempt_below: 0.5,
    })
}

#[test]
fn the_judge_reads_plain_matches_only() {
    let m = masker_with(Settings {
        homophones: true,
        ..settings()
    })
    .with_judge(judge_leaving("w=微信|R1=支"));
    assert_eq!(
        m.mask("用微信支付"),
        None,
        "judged ordinary text, by spelling and by sound"
    );
    assert_eq!(m.mask("加微信"), Some("***".into()));
    assert_eq!(
        m.mask("用微 信支付"),
        Some("用***支付".into()),
        "separated: an evasion"
    );
    assert_eq!(
        m.mask("用薇信支付"),
        Some("用**支付".into()),
        "by sound: an evasion"
    );
}

#[test]
fn latin_letters_in_either_case_are_judged_full_width_is_an_evasion() {
    // The judge leaves `sb` before 系列 (a model line), masks it anywhere else.
    let m = masker().with_judge(judge_leaving("w=sb|R1=系"));
    assert_eq!(
        m.mask("这是SB系列的鞋"),
        None,
        "capitals are how models are written"
    );
    assert_eq!(m.mask("这是sb系列的鞋"), None);
    assert_eq!(m.mask("你是SB"), Some("你是**".into()));
    assert_eq!(
        m.mask("这是ＳＢ系列的鞋"),
        Some("这是**系列的鞋".into()),
        "full width: an evasion"
    );
    assert_eq!(
        m.mask("这是S-B系列的鞋"),
        Some("这是***系列的鞋".into()),
        "separated: an evasion"
    );
}
