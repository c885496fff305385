use super::*;

/// (kind, covered text) for each span found in `text`.
fn found(text: &str) -> Vec<(PiiKind, &str)> {
    find(text)
        .into_iter()
        .map(|s| (s.kind, &text[s.range()]))
        .collect()
}

fn red(text: &str) -> String {
    redact(text).0
}

#[test]
fn tags_and_names() {
    let tags: Vec<&str> = PiiKind::ALL.iter().map(|k| k.tag()).collect();
    assert_eq!(
        tags,
        [
            "[CARD_NUMBER]",
            "[PHONE_NUMBER]",
            "[EMAIL]",
            "[SSN]",
            "[IBAN]",
            "[ACCOUNT_NUMBER]"
        ]
    );
    let names: Vec<&str> = PiiKind::ALL.iter().map(|k| k.name()).collect();
    assert_eq!(
        names,
        [
            "card_number",
            "phone_number",
            "email",
            "ssn",
            "iban",
            "account_number"
        ]
    );
    assert_eq!(PiiKind::Ssn.to_string(), "ssn");
}

#[test]
fn card_in_digits() {
    let t = "my card is 4111 1111 1111 1111 thanks";
    assert_eq!(found(t), [(PiiKind::CardNumber, "4111 1111 1111 1111")]);
    assert_eq!(red(t), "my card is [CARD_NUMBER] thanks");
    assert_eq!(red("card 4111-1111-1111-1111."), "card [CARD_NUMBER].");
    assert_eq!(red("it's 4111111111111111"), "it's [CARD_NUMBER]");
    // Amex, 15 digits.
    assert_eq!(red("amex 3782 822463 10005 ok"), "amex [CARD_NUMBER] ok");
}

#[test]
fn card_in_words_with_commas() {
    let t = "it's four one one one, one one one one, one one one one, one one one one";
    assert_eq!(
        found(t),
        [(
            PiiKind::CardNumber,
            "four one one one, one one one one, one one one one, one one one one"
        )]
    );
    assert_eq!(red(t), "it's [CARD_NUMBER]");
    assert_eq!(
        red("Four one one one. One one one one. One one one one. One one one one. Thanks."),
        "[CARD_NUMBER]. Thanks."
    );
}

#[test]
fn a_glued_address_after_email_is() {
    assert_eq!(
        red("My email is jon.smithatgmail.com"),
        "My email is [EMAIL]"
    );
    assert_eq!(red("My email is fine."), "My email is fine.");
}

#[test]
fn digit_homophones_inside_a_number() {
    // The recogniser heard "two" as "to" inside a card number.
    assert_eq!(
        red("It is 492 9, 3813, 506 to 7455."),
        "It is [CARD_NUMBER]."
    );
    // Outside a number they stay words.
    assert_eq!(
        red("I talked to 3 people for 20 minutes"),
        "I talked to 3 people for 20 minutes"
    );
}

#[test]
fn card_mixed_digits_and_words() {
    let t = "it's 4111-1111 one one one one, 1111 please";
    assert_eq!(
        found(t),
        [(PiiKind::CardNumber, "4111-1111 one one one one, 1111")]
    );
    assert_eq!(
        red("4111 1111 one one one one double one double one ok"),
        "[CARD_NUMBER] ok"
    );
}

#[test]
fn luhn_failure_is_account_number() {
    assert!(luhn_ok(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1]));
    assert!(!luhn_ok(&[4, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 1, 2]));
    let t = "my card is 4111 1111 1111 1112 ok";
    assert_eq!(found(t), [(PiiKind::AccountNumber, "4111 1111 1111 1112")]);
    assert_eq!(
        red("the number 8273 1934 5502 6617"),
        "the number [ACCOUNT_NUMBER]"
    );
}

#[test]
fn phone_in_digits() {
    assert_eq!(
        found("call me on 07700 900123 please"),
        [(PiiKind::PhoneNumber, "07700 900123")]
    );
    assert_eq!(
        found("my number is +44 20 7946 0958."),
        [(PiiKind::PhoneNumber, "+44 20 7946 0958")]
    );
    assert_eq!(
        found("it's (555) 123-4567 ok"),
        [(PiiKind::PhoneNumber, "(555) 123-4567")]
    );
    assert_eq!(red("try 555-1234"), "try [PHONE_NUMBER]");
    assert_eq!(red("plus one 415 555 0132"), "[PHONE_NUMBER]");
}

#[test]
fn phone_in_words_with_double_and_triple() {
    let t = "call me back on oh seven seven zero zero nine double one two three four";
    assert_eq!(
        found(t),
        [(
            PiiKind::PhoneNumber,
            "oh seven seven zero zero nine double one two three four"
        )]
    );
    assert_eq!(red(t), "call me back on [PHONE_NUMBER]");
    assert_eq!(
        red("it's o two o, triple seven, double five one two. Bye"),
        "it's [PHONE_NUMBER]. Bye"
    );
    assert_eq!(
        red("call 555 double 1 two three four"),
        "call [PHONE_NUMBER]"
    );
}

#[test]
fn email_written_and_spoken() {
    assert_eq!(
        found("my email is john.smith@example.com."),
        [(PiiKind::Email, "john.smith@example.com")]
    );
    assert_eq!(
        red("mail jane_doe+cs@mail.example.co.uk now"),
        "mail [EMAIL] now"
    );
    let t = "my email is john dot smith at example dot com thanks";
    assert_eq!(
        found(t),
        [(PiiKind::Email, "john dot smith at example dot com")]
    );
    assert_eq!(red(t), "my email is [EMAIL] thanks");
    assert_eq!(
        red("it's jsmith one two three at gmail dot com"),
        "it's [EMAIL]"
    );
    assert_eq!(
        red("contact me at john underscore doe at my-company dot co dot uk"),
        "contact me at [EMAIL]"
    );
    assert_eq!(
        red("write to john.smith at example.com"),
        "write to [EMAIL]"
    );
    // "at" without a domain is just a word.
    let plain = "I'll be at home at five, I work at the office dot";
    assert_eq!(found(plain), []);
    assert_eq!(found("look at example dot com"), []);
}

#[test]
fn ssn_in_digits_and_words() {
    assert_eq!(
        found("my ssn is 123-45-6789."),
        [(PiiKind::Ssn, "123-45-6789")]
    );
    let t = "my social is one two three dash four five dash six seven eight nine";
    assert_eq!(
        found(t),
        [(
            PiiKind::Ssn,
            "one two three dash four five dash six seven eight nine"
        )]
    );
    assert_eq!(red(t), "my social is [SSN]");
    assert_eq!(red("social security 123456789"), "social security [SSN]");
    assert_eq!(red("it is 123 45 6789 ok"), "it is [SSN] ok");
}

#[test]
fn iban_spaced_and_compact() {
    let t = "my IBAN is GB82 WEST 1234 5698 7654 32 OK thanks";
    assert_eq!(found(t), [(PiiKind::Iban, "GB82 WEST 1234 5698 7654 32")]);
    assert_eq!(red("iban DE89370400440532013000."), "iban [IBAN].");
    assert_eq!(
        red("lowercase de89 3704 0044 0532 0130 00 here"),
        "lowercase [IBAN] here"
    );
    // Bad checksum, but the shape is right: still an IBAN.
    assert_eq!(red("it's FR12 3456 7890 1234 5678 901"), "it's [IBAN]");
    assert!(iban_checksum_ok("GB82", "WEST12345698765432"));
    assert!(!iban_checksum_ok("GB83", "WEST12345698765432"));
}

#[test]
fn account_numbers() {
    assert_eq!(
        found("account number 12345678"),
        [(PiiKind::AccountNumber, "12345678")]
    );
    assert_eq!(
        red("my order is one two three four five six"),
        "my order is [ACCOUNT_NUMBER]"
    );
    assert_eq!(red("ref 987654 please"), "ref [ACCOUNT_NUMBER] please");
    assert_eq!(
        red("the code is 12345678901234567890123"),
        "the code is [ACCOUNT_NUMBER]"
    );
}

#[test]
fn two_entities_in_one_sentence() {
    let t = "my card number is 4111 1111 1111 1111 and my email is john.smith@example.com";
    let spans = find(t);
    assert_eq!(spans.len(), 2);
    assert_eq!(spans[0].kind, PiiKind::CardNumber);
    assert_eq!(&t[spans[0].range()], "4111 1111 1111 1111");
    assert_eq!(spans[1].kind, PiiKind::Email);
    assert_eq!(&t[spans[1].range()], "john.smith@example.com");
    let (out, rs) = redact(t);
    assert_eq!(
        out,
        "my card number is [CARD_NUMBER] and my email is [EMAIL]"
    );
    assert_eq!(rs, spans);

    let t = "account 12345678, and call me on 555 0123 456";
    assert_eq!(
        red(t),
        "account [ACCOUNT_NUMBER], and call me on [PHONE_NUMBER]"
    );
}

#[test]
fn amounts_years_times_not_redacted() {
    for t in [
        "I paid 20 dollars 3 days ago",
        "back in 2024 it cost 150",
        "call me at 10:30 or 11:45 tomorrow",
        "since 2019, 15 times",
        "it was 2023, 2024 and 2025",
        "in 2019 2020 we paid",
        "the bill was $1,250,000",
        "that's 1,250,000 people",
        "it was 12345.67",
        "a balance of 12.500,00",
        "on 2024-01-15 at 3",
        "on 15.01.2024 we spoke",
        "up 1234567 percent",
        "twelve thousand and ten, eleven, twenty one",
        "one two three ten four five six",
        "I have two or three, maybe four cards",
        "it's five o'clock",
        "pay $1234567 now",
    ] {
        assert_eq!(found(t), [], "{t}");
        assert_eq!(red(t), t);
    }
}

#[test]
fn separator_words_and_zero_forms() {
    assert_eq!(
        red("it's five five five dash one two three four"),
        "it's [PHONE_NUMBER]"
    );
    assert_eq!(
        red("six space seven hyphen eight, nine. o oh zero ok"),
        "[PHONE_NUMBER] ok"
    );
    // Other words break a run.
    assert_eq!(
        red("one two three and four five six"),
        "one two three and four five six"
    );
    // A sentence-initial "Oh," is an interjection.
    assert_eq!(
        found("Oh, 555 1234 is mine"),
        [(PiiKind::PhoneNumber, "555 1234")]
    );
}

#[test]
fn dictated_digits_references_and_context() {
    // Whisper often writes dictated digits one by one.
    assert_eq!(
        found("Yeah, it's 5 5 5, 1 2 3, 4 5 6 7."),
        [(PiiKind::PhoneNumber, "5 5 5, 1 2 3, 4 5 6 7")]
    );
    assert_eq!(red("it's 1 2 3 - 4 5 - 6 7 8 9"), "it's [SSN]");
    // An "Oh" after the number is an interjection, not a zero.
    assert_eq!(
        red("My number is 555-867-5309. Oh, and my email is j.doe@acme.org."),
        "My number is [PHONE_NUMBER]. Oh, and my email is [EMAIL]."
    );
    // Letters glued to 6+ digits.
    assert_eq!(
        found("the reference is ABC123456 ok"),
        [(PiiKind::AccountNumber, "ABC123456")]
    );
    assert_eq!(found("my postcode is SW1A 1AA, COVID19"), []);
    // A spelled-out local part.
    assert_eq!(
        found("my email is j o h n one two at gmail dot com"),
        [(PiiKind::Email, "j o h n one two at gmail dot com")]
    );
    // Keywords decide between phone and account; a possessive counts.
    assert_eq!(
        red("my account's 12345678 and then 20, 30, 40 dollars"),
        "my account's [ACCOUNT_NUMBER] and then 20, 30, 40 dollars"
    );
    assert_eq!(red("my mobile is 123456789"), "my mobile is [PHONE_NUMBER]");
    assert_eq!(
        red("12345678 is my policy"),
        "[ACCOUNT_NUMBER] is my policy"
    );
}

#[test]
fn byte_offsets_with_multibyte_text() {
    let t = "café ☕ — naïve: 4111 1111 1111 1111 ünd mail josé@exämple.com";
    let spans = find(t);
    assert_eq!(spans[0].kind, PiiKind::CardNumber);
    let start = t.find("4111").unwrap();
    assert_eq!((spans[0].start, spans[0].end), (start, start + 19));
    assert_eq!(&t[spans[0].range()], "4111 1111 1111 1111");
    let (out, _) = redact(t);
    assert!(
        out.starts_with("café ☕ — naïve: [CARD_NUMBER] ünd"),
        "{out}"
    );
    // Every span lies on char boundaries.
    for s in &spans {
        assert!(t.is_char_boundary(s.start) && t.is_char_boundary(s.end));
    }
    let t = "Ünïcödé → one two three dash four five dash six seven eight nine";
    let s = find(t)[0];
    assert_eq!(s.start, t.find("one").unwrap());
    assert_eq!(s.end, t.len());
    let t = "café josé@exämple.com";
    assert_eq!(found(t), [(PiiKind::Email, "josé@exämple.com")]);
    assert_eq!(red(t), "café [EMAIL]");
}

#[test]
fn spans_refer_to_original_and_are_sorted() {
    let t = "a 4111 1111 1111 1111 b john@x.io c 555 1234 d 123-45-6789";
    let (out, spans) = redact(t);
    assert_eq!(out, "a [CARD_NUMBER] b [EMAIL] c [PHONE_NUMBER] d [SSN]");
    for w in spans.windows(2) {
        assert!(w[0].end <= w[1].start);
    }
    let texts: Vec<&str> = spans.iter().map(|s| &t[s.range()]).collect();
    assert_eq!(
        texts,
        [
            "4111 1111 1111 1111",
            "john@x.io",
            "555 1234",
            "123-45-6789"
        ]
    );
}

#[test]
fn redact_words_alignment() {
    let words = [
        "my", "card", "is", "four", "one", "one", "one,", "1111", "1111", "1111.", "Email", "john",
        "dot", "smith", "at", "example", "dot", "com,", "thanks",
    ];
    let marks = redact_words(&words);
    assert_eq!(marks.len(), words.len());
    let card = Some(PiiKind::CardNumber);
    let mail = Some(PiiKind::Email);
    assert_eq!(
        marks,
        [
            None, None, None, card, card, card, card, card, card, card, None, mail, mail, mail,
            mail, mail, mail, mail, None
        ]
    );
    assert_eq!(redact_words(&[]), []);
    assert_eq!(redact_words(&["", "20", "dollars"]), [None, None, None]);
    let w = ["+44", "7700", "900123"];
    assert_eq!(redact_words(&w), [Some(PiiKind::PhoneNumber); 3]);
}

#[test]
fn idempotent() {
    for t in [
        "my card number is 4111 1111 1111 1111 and my email is john.smith@example.com",
        "it's four one one one, one one one one, one one one one, one one one one",
        "call me back on oh seven seven zero zero nine double one two three four",
        "my social is one two three dash four five dash six seven eight nine",
        "my IBAN is GB82 WEST 1234 5698 7654 32 and account 12345678",
        "john dot smith at example dot com, +44 20 7946 0958",
        "[CARD_NUMBER] [PHONE_NUMBER] [EMAIL] [SSN] [IBAN] [ACCOUNT_NUMBER]",
    ] {
        let once = red(t);
        assert_eq!(red(&once), once, "{t}");
        assert_eq!(find(&once), [], "{once}");
        assert_eq!(once == t, t.starts_with('['), "{t}");
    }
    assert_eq!(found("[CARD_NUMBER] and [EMAIL]"), []);
}

#[test]
fn empty_and_plain_text() {
    assert_eq!(find(""), []);
    assert_eq!(red(""), "");
    assert_eq!(
        red("hello, how can I help you today?"),
        "hello, how can I help you today?"
    );
}
