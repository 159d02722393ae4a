//! Helpers for images in requests.

/// Splits `data:<media type>;base64,<data>` into its media type and base64 data.
pub(crate) fn parse_data_url(url: &str) -> Option<(&str, &str)> {
    let rest = url.strip_prefix("data:")?;
    let (meta, data) = rest.split_once(',')?;
    let media_type = meta.strip_suffix(";base64")?;
    Some((media_type, data))
}

/// An image as a URL; inline bytes become a `data:` URL.
pub(crate) fn image_url(source: &kai_core::ImageSource) -> String {
    use base64::Engine as _;
    match source {
        kai_core::ImageSource::Url { url } => url.clone(),
        kai_core::ImageSource::Bytes { media_type, data } => {
            format!(
                "data:{media_type};base64,{}",
                base64::engine::general_purpose::STANDARD.encode(data)
            )
        }
    }
}

/// The image media type a URL's extension suggests, defaulting to JPEG.
pub(crate) fn image_type_of(url: &str) -> &'static str {
    let path = url.split(['?', '#']).next().unwrap_or(url).to_ascii_lowercase();
    match path.rsplit('.').next() {
        Some("png") => "image/png",
        Some("gif") => "image/gif",
        Some("webp") => "image/webp",
        Some("heic") => "image/heic",
        _ => "image/jpeg",
    }
}

#[cfg(test)]
mod tests {
    use super::*;

    #[test]
    fn data_urls_and_types() {
        assert_eq!(
            parse_data_url("data:image/png;base64,AQID"),
            Some(("image/png", "AQID"))
        );
        assert_eq!(parse_data_url("data:text/plain,hello"), None);
        assert_eq!(parse_data_url("https://x/a.png"), None);
        assert_eq!(image_type_of("https://x/a.PNG?size=2"), "image/png");
        assert_eq!(image_type_of("https://x/photo"), "image/jpeg");
    }
}
